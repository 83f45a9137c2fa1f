"""The alert HTTP API (aiohttp.web): list, read, acknowledge and resolve alerts; list incidents.

:mod:`~monitor.api.server` builds and serves the application, :mod:`~monitor.api.alerts`
and :mod:`~monitor.api.incidents` answer the JSON endpoints, :mod:`~monitor.api.links` the
acknowledgement link's pages, :mod:`~monitor.api.requests` holds what they share.

Endpoints (JSON unless said otherwise; errors are ``{"error": code, "message": text}``):

``GET /alerts``
    Bearer token. Filters ``state`` (open, notified, acknowledged, resolved, failed),
    ``manager_id``, ``since`` (RFC 3339 with offset; alerts recorded at or after it),
    ``late`` and ``unroutable`` (``true``/``false``: late alerts are stale events
    nobody was paged about; unroutable ones reach no configured channel);
    ``limit`` (1–500, default 50) and ``cursor`` (the previous page's ``next_cursor``).
    Newest first: ``{"alerts": [...], "next_cursor": str | null}``.
``GET /alerts/{id}``
    Bearer token. The alert with its ``state``, ``events``, ``deliveries`` and ``history``.
``POST /alerts/{id}/ack``
    Bearer token and JSON ``{"by": str, "note": str?}`` (through ``api``), or the
    signed link's ``?token=`` with an optional form field ``note`` (through
    ``link``; who is the manager the link was sent to; answers a small HTML page).
``GET /alerts/{id}/ack?token=``
    The page an ack link opens: it shows the alert and a button that POSTs. A GET
    never acknowledges, so a mail scanner that prefetches links changes nothing.
``POST /alerts/{id}/resolve``
    Bearer token and JSON ``{"by": str, "note": str}``.
``POST /alerts/{id}/resend``
    Bearer token and JSON ``{"by": str}``: the alert's failed deliveries (and those of
    the notice or summary that carries it) go back in the outbox, due at once; a
    failed alert is open again. ``{"alert_id", "deliveries", "alert_ids"}``.
``GET /incidents``
    Bearer token. Storm-control incidents, latest start first; ``open=true`` for
    the ones not ended, ``top_level=true`` to leave out those a broader incident
    holds (``parent_id``), ``limit`` (1–500, default 50): ``{"incidents": [...]}``.
``GET /incidents/{id}``
    Bearer token. The incident with its VIP alerts (client, manager, state).
``GET /terminals/impact``
    Bearer token. Repair priority: terminals ranked by VIP impact (distinct VIP clients,
    then failures, then managers) over ``window`` (``24h`` or ``7d``) until now, their own
    failure classes only, issuer and network outages left out; ``limit`` (1–500,
    default 20): ``{"window", "since", "until", "classes", "terminals": [...]}``.

Status codes: 400 bad input, 401 missing or wrong bearer token, 403 a refused
(expired, tampered, other alert's) link token or an API with no token configured,
404 unknown alert, 409 resolving an alert that is not acknowledged, 503
``store_unavailable`` (with ``Retry-After``) while the alert store cannot be reached
(a transient error: ask again; nothing was changed), 500 ``store_error`` for any
other store failure (its detail only in the monitor's log, never in the answer). Acknowledging
or resolving twice answers 200 with ``"changed": false``. The store holds no raw
PAN, and notes are PAN-scrubbed before they are stored.
"""

from __future__ import annotations

from monitor.api.server import ApiServer, build_api, start_api

__all__ = ["ApiServer", "build_api", "start_api"]
