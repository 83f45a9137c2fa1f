"""The alert HTTP API (aiohttp.web): list, read, acknowledge and resolve alerts; list incidents.

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

import asyncio
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any, Final

from aiohttp import web

from monitor.alerts.delivery.links import AckLinks, InvalidTokenError
from monitor.alerts.export import alert_record, history_record
from monitor.alerts.states import ALERT_STATES, AlertNotFoundError, StateConflictError, Transition
from monitor.alerts.store import AlertStore
from monitor.alerts.store.db import DATABASE_ERRORS, is_transient
from monitor.incidents import Incident

__all__ = ["ApiServer", "build_api", "start_api"]

log = logging.getLogger(__name__)

STORE: Final = web.AppKey("store", AlertStore)
LINKS: Final = web.AppKey("links", AckLinks)
TOKEN: Final = web.AppKey("api_token", str)
_DEFAULT_PAGE: Final = 50
# Query values of a true/false filter; "" (absent) means no filter.
_BOOLEANS: Final[dict[str, bool | None]] = {"": None, "true": True, "1": True, "yes": True,
                                            "false": False, "0": False, "no": False}
# Seconds a caller is asked to wait when the store is unavailable (Retry-After).
_RETRY_AFTER_SECONDS: Final = 5
# Request bodies are a name and a note: 64 KiB is plenty and bounds what a caller can send.
_MAX_BODY_BYTES: Final = 64 * 1024
# A link page must not leak its token (Referer), be cached, or be framed.
_PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'",
}


def build_api(
    store: AlertStore, *, api_token: str | None = None, links: AckLinks | None = None
) -> web.Application:
    """Return the API application.

    Args:
        store: the alert store (its calls run in a thread).
        api_token: the bearer token of JSON callers; ``None`` refuses them all (403).
        links: the ack link verifier; ``None`` refuses every link (403).
    """
    app = web.Application(client_max_size=_MAX_BODY_BYTES, middlewares=[_store_errors])
    app[STORE] = store
    if api_token:
        app[TOKEN] = api_token
    if links is not None:
        app[LINKS] = links
    app.router.add_get("/alerts", _list_alerts)
    app.router.add_get("/alerts/{alert_id}", _get_alert)
    app.router.add_get("/alerts/{alert_id}/ack", _ack_page)
    app.router.add_post("/alerts/{alert_id}/ack", _ack)
    app.router.add_post("/alerts/{alert_id}/resolve", _resolve)
    app.router.add_post("/alerts/{alert_id}/resend", _resend)
    app.router.add_get("/incidents", _list_incidents)
    app.router.add_get("/incidents/{incident_id}", _get_incident)
    return app


@dataclass(frozen=True, slots=True)
class ApiServer:
    """A running API server: ``url`` is its base URL; ``await close()`` stops it."""

    url: str
    runner: web.AppRunner

    async def close(self) -> None:
        """Stop listening and finish in-flight requests."""
        await self.runner.cleanup()


async def start_api(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> ApiServer:
    """Serve ``app`` on ``host:port`` (0: any free port) until ``close``.

    Raises:
        OSError: the address is taken or not ours.
    """
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    return ApiServer(url=f"http://{bound_host}:{bound_port}", runner=runner)


# -- helpers ---------------------------------------------------------------------------


@web.middleware
async def _store_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """A store failure is a JSON 503 (transient) or 500, never a traceback or a secret."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except DATABASE_ERRORS as error:
        # The path, never the query string: an ack link's token is in it.
        if is_transient(error):
            log.warning("API %s %s: the alert store is unavailable (%s)", request.method,
                        request.path, type(error).__name__)
            return _error(503, "store_unavailable",
                          "the alert store is unavailable; nothing was changed, try again shortly",
                          **{"Retry-After": str(_RETRY_AFTER_SECONDS)})
        log.error("API %s %s: the alert store failed (%s, SQLSTATE %s)", request.method,
                  request.path, type(error).__name__, getattr(error, "sqlstate", None))
        return _error(500, "store_error", "the alert store failed; see the monitor's log")


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def _authorize(request: web.Request) -> web.Response | None:
    """``None`` when the bearer token is right, else the error response."""
    expected = request.app.get(TOKEN)
    if expected is None:
        return _error(403, "api_disabled", "no API token is configured for this monitor")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return _error(401, "unauthorized", "a valid 'Authorization: Bearer <API token>' is required",
                      **{"WWW-Authenticate": 'Bearer realm="cardmon"'})
    return None


async def _json_body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "bad_request", "the body must be a JSON object")
    if not isinstance(body, dict):
        return _error(400, "bad_request", "the body must be a JSON object")
    for key in ("by", "note"):
        if key in body and body[key] is not None and not isinstance(body[key], str):
            return _error(400, "bad_request", f"'{key}' must be a string")
    return body


def _transition_json(result: Transition) -> dict[str, Any]:
    return {
        "alert_id": result.alert_id,
        "state": result.state,
        "changed": result.changed,
        "entry": history_record(result.entry) if result.entry is not None else None,
    }


async def _full_record(store: AlertStore, alert_id: str) -> dict[str, Any] | None:
    def read() -> dict[str, Any] | None:
        alert = store.get_alert(alert_id)
        if alert is None:
            return None
        return alert_record(alert, store.alert_events(alert_id), state=store.state_of(alert_id),
                            history=store.history(alert_id),
                            recipients=store.delivery_recipients(alert_id),
                            incident_id=store.incident_of(alert_id))

    return await asyncio.to_thread(read)


def _incident_json(incident: Incident) -> dict[str, Any]:
    return {
        "incident_id": incident.incident_id, "scope": incident.scope,
        "scope_key": incident.scope_key, "title": incident.describe(),
        "started_at": incident.started_at.isoformat(),
        "last_failure_at": incident.last_failure_at.isoformat(),
        "ended_at": incident.ended_at.isoformat() if incident.ended_at else None,
        "open": incident.is_open, "failures": incident.failures, "cards": incident.cards,
        "terminals": incident.terminals, "relapses": incident.relapses,
        "flapping": incident.flapping, "note": incident.note,
        "alert_count": incident.alert_count, "manager_count": incident.manager_count,
        "parent_id": incident.parent_id,
    }


async def _list_incidents(request: web.Request) -> web.Response:
    if (denied := _authorize(request)) is not None:
        return denied
    try:
        limit = int(request.query.get("limit", _DEFAULT_PAGE))
        if not 1 <= limit <= 500:
            raise ValueError
    except ValueError:
        return _error(400, "bad_request", "limit must be an integer from 1 to 500")
    open_only = request.query.get("open", "").lower() in ("1", "true", "yes")
    top_level = request.query.get("top_level", "").lower() in ("1", "true", "yes")
    incidents = await asyncio.to_thread(request.app[STORE].list_incidents, open_only=open_only,
                                        top_level=top_level, limit=limit)
    return web.json_response({"incidents": [_incident_json(i) for i in incidents]})


async def _get_incident(request: web.Request) -> web.Response:
    if (denied := _authorize(request)) is not None:
        return denied
    store = request.app[STORE]
    incident_id = request.match_info["incident_id"]

    def read() -> dict[str, Any] | None:
        incident = store.get_incident(incident_id)
        if incident is None:
            return None
        record = _incident_json(incident)
        record["alerts"] = [
            {"alert_id": alert.alert_id, "customer_id": alert.customer_id,
             "customer_name": alert.customer_name, "tier": alert.tier,
             "manager_id": alert.manager.manager_id, "severity": alert.severity, "state": state,
             "failures": alert.event_count, "linked_at": linked_at.isoformat()}
            for alert, state, linked_at in store.incident_alerts(incident_id)]
        return record

    record = await asyncio.to_thread(read)
    if record is None:
        return _error(404, "not_found", f"no incident {incident_id}")
    return web.json_response(record)


# -- JSON endpoints ----------------------------------------------------------------------


async def _list_alerts(request: web.Request) -> web.Response:
    if (denied := _authorize(request)) is not None:
        return denied
    query = request.query
    state = query.get("state") or None
    if state is not None and state not in ALERT_STATES:
        return _error(400, "bad_request", f"state must be one of {', '.join(ALERT_STATES)}")
    since = None
    if query.get("since"):
        try:
            since = datetime.fromisoformat(query["since"])
        except ValueError:
            since = None
        if since is None or since.tzinfo is None:
            return _error(400, "bad_request",
                          "since must be an RFC 3339 time with an offset, e.g. 2024-05-06T12:00:00Z")
    try:
        limit = int(query.get("limit", _DEFAULT_PAGE))
    except ValueError:
        return _error(400, "bad_request", "limit must be an integer")
    flags: dict[str, bool | None] = {}
    for name in ("late", "unroutable"):
        given = query.get(name, "").lower()
        if given not in _BOOLEANS:
            return _error(400, "bad_request", f"{name} must be true or false")
        flags[name] = _BOOLEANS[given]
    store = request.app[STORE]
    try:
        page = await asyncio.to_thread(
            store.find_alerts, state=state, manager_id=query.get("manager_id") or None,
            since=since, limit=limit, cursor=query.get("cursor") or None, **flags,
        )
    except ValueError as error:
        return _error(400, "bad_request", str(error))
    alerts = []
    for alert in page.alerts:
        record = alert_record(alert, [], state=page.states[alert.alert_id])
        del record["events"], record["history"]
        alerts.append(record)
    return web.json_response({"alerts": alerts, "next_cursor": page.next_cursor})


async def _get_alert(request: web.Request) -> web.Response:
    if (denied := _authorize(request)) is not None:
        return denied
    alert_id = request.match_info["alert_id"]
    record = await _full_record(request.app[STORE], alert_id)
    if record is None:
        return _error(404, "not_found", f"no alert {alert_id}")
    return web.json_response(record)


async def _ack(request: web.Request) -> web.Response:
    if "token" in request.query:
        return await _ack_by_link(request)
    if (denied := _authorize(request)) is not None:
        return denied
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    if not body.get("by"):
        return _error(400, "bad_request", "'by' (who acknowledges) is required")
    return await _apply(request, "ack", by=body["by"], note=body.get("note"), via="api")


async def _resolve(request: web.Request) -> web.Response:
    if (denied := _authorize(request)) is not None:
        return denied
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    if not body.get("by") or not (body.get("note") or "").strip():
        return _error(400, "bad_request", "'by' and a 'note' saying what was done are required")
    return await _apply(request, "resolve", by=body["by"], note=body["note"], via="api")


async def _resend(request: web.Request) -> web.Response:
    if (denied := _authorize(request)) is not None:
        return denied
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    if not body.get("by"):
        return _error(400, "bad_request", "'by' (who re-sends) is required")
    alert_id = request.match_info["alert_id"]
    try:
        result = await asyncio.to_thread(request.app[STORE].resend, alert_id, by=body["by"], via="api")
    except AlertNotFoundError:
        return _error(404, "not_found", f"no alert {alert_id}")
    except ValueError as error:
        return _error(400, "bad_request", str(error))
    return web.json_response({"alert_id": alert_id, "deliveries": result.deliveries,
                              "alert_ids": list(result.alert_ids)})


async def _apply(request: web.Request, what: str, *, by: str, note: str | None,
                 via: str) -> web.Response:
    store = request.app[STORE]
    alert_id = request.match_info["alert_id"]
    try:
        if what == "ack":
            result = await asyncio.to_thread(store.acknowledge, alert_id, by=by, via=via, note=note)
        else:
            result = await asyncio.to_thread(store.resolve, alert_id, by=by, via=via,
                                             note=note or "")
    except AlertNotFoundError:
        return _error(404, "not_found", f"no alert {alert_id}")
    except StateConflictError as error:
        return _error(409, "conflict", str(error))
    except ValueError as error:
        return _error(400, "bad_request", str(error))
    return web.json_response(_transition_json(result))


# -- the ack link: GET shows, POST acts ---------------------------------------------------


def _page(status: int, title: str, body: str) -> web.Response:
    html = (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<meta name=\"robots\" content=\"noindex\"><title>{escape(title)} · cardmon</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;"
        "padding:0 1rem}dt{font-weight:600}textarea{width:100%}button{font-size:1.1rem;"
        "padding:.5rem 1.5rem}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(status=status, text=html, content_type="text/html",
                        headers=_PAGE_HEADERS)


def _check_link(request: web.Request) -> tuple[str, str] | web.Response:
    """``(alert_id, manager_id)`` of a valid link, else the 403 page."""
    alert_id = request.match_info["alert_id"]
    links = request.app.get(LINKS)
    if links is None:
        return _page(403, "Link refused", "<p>Acknowledgement links are not enabled on this "
                     "monitor. Use <code>cardmon alerts ack</code> or the API.</p>")
    try:
        claim = links.verify(request.query.get("token", ""), alert_id)
    except InvalidTokenError as error:
        return _page(403, "Link refused",
                     f"<p>{escape(str(error).capitalize())}. Nothing was changed.</p>"
                     "<p>Open the alert from a newer message, or acknowledge it with "
                     "<code>cardmon alerts ack</code> or the API.</p>")
    return alert_id, claim.manager_id


def _summary(record: dict[str, Any]) -> str:
    rows = [("Alert", record["alert_id"]), ("Client", f"{record['customer_name']} ({record['tier']})"),
            ("Severity", record["severity"]), ("Failed transactions", str(record["event_count"])),
            ("State", record["state"])]
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows) + "</dl>"


async def _ack_page(request: web.Request) -> web.Response:
    checked = _check_link(request)
    if isinstance(checked, web.Response):
        return checked
    alert_id, manager_id = checked
    record = await _full_record(request.app[STORE], alert_id)
    if record is None:
        return _page(404, "Unknown alert", f"<p>There is no alert {escape(alert_id)}.</p>")
    if record["state"] in ("acknowledged", "resolved"):
        done = next((h for h in reversed(record["history"]) if h["action"] == "acknowledged"), None)
        who = f" by {escape(done['by'])} at {escape(done['at'])}" if done else ""
        return _page(200, "Already acknowledged",
                     f"{_summary(record)}<p>This alert was already acknowledged{who}.</p>")
    action = escape(request.path_qs, quote=True)
    form = (f"<form method=\"post\" action=\"{action}\">"
            "<p><label for=\"note\">Note (optional)</label><br>"
            "<textarea id=\"note\" name=\"note\" rows=\"3\" maxlength=\"2000\"></textarea></p>"
            f"<p><button type=\"submit\">Acknowledge as {escape(manager_id)}</button></p></form>")
    return _page(200, "Acknowledge this alert?", _summary(record) + form)


async def _ack_by_link(request: web.Request) -> web.Response:
    checked = _check_link(request)
    if isinstance(checked, web.Response):
        return checked
    alert_id, manager_id = checked
    form = await request.post()
    note = form.get("note")
    try:
        result = await asyncio.to_thread(
            request.app[STORE].acknowledge, alert_id, by=manager_id, via="link",
            note=note if isinstance(note, str) else None,
        )
    except AlertNotFoundError:
        return _page(404, "Unknown alert", f"<p>There is no alert {escape(alert_id)}.</p>")
    if not result.changed:
        return _page(200, "Already acknowledged",
                     f"<p>Alert {escape(alert_id)} was already {escape(result.state)}. "
                     "Nothing was changed.</p>")
    return _page(200, "Acknowledged",
                 f"<p>Alert {escape(alert_id)} is acknowledged by {escape(manager_id)}. "
                 "Its escalation has stopped.</p>")
