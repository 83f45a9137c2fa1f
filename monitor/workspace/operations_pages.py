"""The operations pages: incidents, one incident, and the terminals with VIP failures.

Operations (``workspace.operations``) are not relationship managers: they see what
failed (a terminal, a merchant, a region, an issuer, the network) and how much, never
an alert's page (alerts name clients). These pages name no client either, unless
``workspace.operations_see_client_names`` is true (then an incident's page lists the
clients it hit); manager names are shown, so operations know whom to call.

========================================  =============================================
``GET /workspace/incidents``              the latest :data:`INCIDENT_LIMIT` incidents,
                                          open ones first
``GET /workspace/incidents/{incident_id}`` one incident and the alerts linked to it
``GET /workspace/terminals``              the terminals that hurt VIP clients most over
                                          the last :data:`TERMINAL_WINDOW` (repair priority)
========================================  =============================================

Terminals are ranked by repair priority, as the API, the CLI and the fleet dashboard
rank them (:meth:`~monitor.alerts.store.AlertStore.terminal_impact`: distinct VIP
clients hurt, then failures, then managers; the terminal's own failure classes only,
``Workspace.impact_classes``; issuer and network outages left out), with each one's open
terminal incident. It is the alert store's view: a terminal failing only for non-VIP
cards is not listed (Grafana's fleet dashboard shows every terminal). Where the monitor runs the health
book in this process (:attr:`~monitor.workspace.web.Workspace.terminal_health`), each
listed terminal also shows its live health state and reasons at the last evaluation. A session without the operations role gets
404 for every one of these routes (:func:`~monitor.workspace.access.may_see_page`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiohttp import web

from monitor.alerts.store import TerminalImpact
from monitor.workspace.access import Page, may_see_client_names, may_see_page
from monitor.workspace.sessions import Session
from monitor.workspace.web import WORKSPACE, current_session, not_found, render, to_sign_in

__all__ = ["INCIDENT_LIMIT", "MAX_OPEN_INCIDENTS", "TERMINAL_LIMIT", "TERMINAL_WINDOW", "incident_page",
           "incidents_page", "terminals_page"]

#: How many incidents the list shows (the latest started first, then open ones on top).
INCIDENT_LIMIT: Final = 100
#: How far back the terminals page looks (event time).
TERMINAL_WINDOW: Final = timedelta(days=7)
#: How many terminals the terminals page lists (the most VIP clients hurt first).
TERMINAL_LIMIT: Final = 200
#: The most open incidents read to find each terminal's open one (the store's page limit).
MAX_OPEN_INCIDENTS: Final = 500
_NO_PAGE: Final = "There is no such page among yours."


async def _operations(request: web.Request, page: Page) -> Session | web.Response:
    """The session if it has the operations ``page``; else the sign-in redirect or the 404."""
    session = await current_session(request)
    if session is None:
        return to_sign_in()
    if not may_see_page(session, page):
        return not_found(request, session, _NO_PAGE)
    return session


async def incidents_page(request: web.Request) -> web.Response:
    """``GET /workspace/incidents``: the latest incidents, open ones first."""
    session = await _operations(request, "incidents")
    if isinstance(session, web.Response):
        return session
    store = request.app[WORKSPACE].store
    incidents = await asyncio.to_thread(store.list_incidents, limit=INCIDENT_LIMIT)
    incidents.sort(key=lambda i: not i.is_open)  # stable: the latest start first within each
    return render(request, "incidents.html", {"session": session, "incidents": incidents})


async def incident_page(request: web.Request) -> web.Response:
    """``GET /workspace/incidents/{incident_id}``: one incident and its alerts (clients named only if configured)."""
    session = await _operations(request, "incidents")
    if isinstance(session, web.Response):
        return session
    workspace = request.app[WORKSPACE]
    incident_id = request.match_info["incident_id"]

    def read() -> tuple[Any, list[Any]] | None:
        incident = workspace.store.get_incident(incident_id)
        if incident is None:
            return None
        return incident, workspace.store.incident_alerts(incident_id)

    found = await asyncio.to_thread(read)
    if found is None:
        return not_found(request, session, "There is no such incident.")
    incident, linked = found
    names = may_see_client_names(
        session, operations_see_client_names=workspace.mailer.people.roles.operations_see_client_names)
    rows = [{"severity": alert.severity, "tier": alert.tier, "state": state, "linked_at": linked_at,
             "manager": alert.manager.name or alert.manager.manager_id,
             "client": alert.customer_name if names else None}
            for alert, state, linked_at in linked]
    return render(request, "incident.html", {"session": session, "incident": incident, "rows": rows,
                                             "client_names": names})


async def terminals_page(request: web.Request) -> web.Response:
    """``GET /workspace/terminals``: the terminals that hurt VIP clients most over the last week, with their state now."""
    session = await _operations(request, "terminals")
    if isinstance(session, web.Response):
        return session
    workspace = request.app[WORKSPACE]
    health = workspace.terminal_health
    until = datetime.now(UTC)

    def read() -> tuple[list[TerminalImpact], dict[str, str], dict[str, tuple[str, list[str]]]]:
        ranked = workspace.store.terminal_impact(since=until - TERMINAL_WINDOW, until=until,
                                                 classes=workspace.impact_classes, limit=TERMINAL_LIMIT)
        open_incidents = {i.scope_key: i.incident_id for i in reversed(
            workspace.store.list_incidents(open_only=True, limit=MAX_OPEN_INCIDENTS)) if i.scope == "terminal"}
        states = {} if health is None else {t.terminal_id: health(t.terminal_id) for t in ranked}
        return ranked, open_incidents, {tid: (found[0].label, found[1])
                                        for tid, found in states.items() if found is not None}

    terminals, incidents, states = await asyncio.to_thread(read)
    return render(request, "terminals.html", {"session": session, "terminals": terminals,
                                               "incidents": incidents, "window_days": TERMINAL_WINDOW.days,
                                               "limit": TERMINAL_LIMIT, "live": health is not None,
                                               "states": states})
