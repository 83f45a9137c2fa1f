"""The workspace's alert routes: the manager's alerts, one alert, acknowledge and resolve.

A team lead's list holds their team's managers' clients' alerts too (with a manager
column); what a session sees is :mod:`~monitor.workspace.access`'s decision.

Acknowledge and resolve use the store's lifecycle calls with the session's manager as
``by`` and ``via="workspace"``, so the alert's history says who did it, when and from
where. An alert the session may not see (:func:`~monitor.workspace.access.may_see_alert`),
or none, answers 404 and nothing changes; a form without the session's CSRF token
answers 403; resolving before acknowledging answers 409.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import quote, urlencode

from aiohttp import web

from monitor.alerts.messages.recovery import kinds_in_order
from monitor.alerts.states import ALERT_STATES, AlertState, HistoryEntry, StateConflictError
from monitor.alerts.store import AlertStore, Recovery, TerminalActivity
from monitor.domain import SEVERITIES, Alert, AlertEvent
from monitor.i18n import N_
from monitor.incidents.model import Incident
from monitor.workspace.access import may_see_alert, may_see_page, visible_managers
from monitor.workspace.outcomes import OUTCOME_LABELS
from monitor.workspace.recovery_view import recovery_shown
from monitor.workspace.sessions import Session
from monitor.workspace.web import (
    WORKSPACE,
    csrf_ok,
    csrf_refused,
    current_session,
    not_found,
    page_translator,
    redirect,
    refused,
    render,
    to_sign_in,
)

__all__ = ["ALERT_LIMIT", "DONE_STATES", "MAX_NOTE_CHARS", "VIA", "acknowledge", "alert_page",
           "alerts_page", "resolve", "row_order"]

log = logging.getLogger("monitor.workspace")

#: How many of a manager's alerts the list shows (newest recorded first, then sorted).
ALERT_LIMIT: Final = 200
#: The states the list shows after the open ones.
DONE_STATES: Final[frozenset[AlertState]] = frozenset({"acknowledged", "resolved"})
#: The ``via`` the workspace's acknowledgements and resolutions record in the history.
VIA: Final = "workspace"
#: The longest note the forms accept (the store keeps at most 2,000 characters).
MAX_NOTE_CHARS: Final = 1000
#: How far before and after an alert's window the page looks for other clients'
#: failures at the same terminals: long enough to see a terminal fault building up.
TERMINAL_CONTEXT: Final = timedelta(minutes=30)
#: Sinks that keep a record of an alert and reach nobody (shown as records, not messages).
RECORD_SINKS: Final = frozenset({"console", "jsonl"})
_RANK: Final = {severity: rank for rank, severity in enumerate(SEVERITIES)}


def _order(alert: Alert, state: AlertState) -> tuple[int, int, datetime, str]:
    return (state in DONE_STATES, -_RANK.get(alert.severity, 0), alert.created_at, alert.alert_id)


def _events_query(manager: str | None, state: str | None) -> str:
    """The list's filter as the live stream's query string (``""`` when unfiltered)."""
    query = {key: value for key, value in (("manager", manager), ("state", state)) if value}
    return f"?{urlencode(query)}" if query else ""


def row_order(alert: Alert, state: AlertState) -> str:
    """The list's order of an alert as a string (live updates sort rows by it): open first,
    then by severity, oldest first."""
    done, rank, created_at, alert_id = _order(alert, state)
    created = created_at.astimezone(UTC).isoformat(timespec="microseconds")  # fixed width
    return f"{int(done)}|{len(SEVERITIES) + rank:02d}|{created}|{alert_id}"


async def alerts_page(request: web.Request) -> web.Response:
    """``GET /workspace/alerts[?state=...][&manager=...]``: the alerts of the clients the session sees
    (a manager's own, a team lead's team's too; ``manager`` narrows to one of them), open first,
    by severity and age; a role without alerts gets 404."""
    session = await current_session(request)
    if session is None:
        return to_sign_in()
    if not may_see_page(session, "alerts"):
        return not_found(request, session, "There is no such page among yours.")
    wanted = request.query.get("state")
    state: AlertState | None = next((s for s in ALERT_STATES if s == wanted), None)
    store = request.app[WORKSPACE].store
    visible = visible_managers(session)
    one = request.query.get("manager", "")
    managers = [one] if one in visible else sorted(visible)

    def read() -> tuple[list[Alert], dict[str, AlertState], bool]:
        pages = [store.find_alerts(manager_id=m, state=state, limit=ALERT_LIMIT) for m in managers]
        found = sorted((a for p in pages for a in p.alerts), key=lambda a: (a.created_at, a.alert_id),
                       reverse=True)
        states = {k: v for p in pages for k, v in p.states.items()}
        more = len(found) > ALERT_LIMIT or any(p.next_cursor is not None for p in pages)
        return found[:ALERT_LIMIT], states, more

    found, states, more = await asyncio.to_thread(read)
    watches = await asyncio.to_thread(store.recoveries_of, [a.alert_id for a in found])
    alerts = sorted(found, key=lambda a: _order(a, states[a.alert_id]))
    rows = [{"alert": a, "state": states[a.alert_id], "open": states[a.alert_id] not in DONE_STATES,
             "order": row_order(a, states[a.alert_id]),
             "recovery": getattr(watches.get(a.alert_id), "status", None)} for a in alerts]
    return render(request, "alerts.html", {"session": session, "rows": rows, "more": more,
                                            "team": len(visible) > 1, "states": ALERT_STATES,
                                            "manager": one if one in visible and len(visible) > 1 else None,
                                            "state": state,
                                            "events_query": _events_query(one if one in visible else None,
                                                                          state)}, scripts=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class _AlertView:
    """Everything the alert page shows, read in one thread hop."""

    alert: Alert
    state: AlertState | None
    events: list[AlertEvent]
    history: list[HistoryEntry]
    recipients: dict[int, str]  # <delivery_id: manager ID of an escalation's recipient>
    incident: Incident | None
    terminals: list[TerminalActivity]
    recovery: Recovery | None
    recovery_kinds: list[tuple[str, str]]  # <(channel, txn_type) that failed, in order>


def _read_alert(store: AlertStore, session: Session, alert_id: str) -> _AlertView | None:
    alert = store.get_alert(alert_id)
    if alert is None or not may_see_alert(session, alert):
        return None
    events = store.alert_events(alert_id)
    incident_id = store.incident_of(alert_id)
    activity = store.terminal_activity(
        (event.terminal_id for event in events),
        start=alert.window_start - TERMINAL_CONTEXT, end=alert.window_end + TERMINAL_CONTEXT)
    return _AlertView(
        alert=alert, state=store.state_of(alert_id), events=events,
        history=store.history(alert_id), recipients=store.delivery_recipients(alert_id),
        incident=store.get_incident(incident_id) if incident_id else None,
        terminals=sorted(activity.values(), key=lambda found: (-found.failures, found.terminal_id)),
        recovery=store.recovery_of(alert_id),
        recovery_kinds=kinds_in_order(store.recovery_kinds([alert_id])))


async def alert_page(request: web.Request) -> web.Response:
    """``GET /workspace/alerts/{alert_id}``: one alert the session may see; any other answers 404.

    Shows the client (linked to their page), each failed transaction (masked card,
    terminal, merchant, amount, response), what else failed at those terminals around
    the alert (every client's recorded failures, :data:`TERMINAL_CONTEXT` either side),
    the incident it belongs to, its deliveries, and its history with the forms to
    acknowledge and resolve. Without a session: the sign-in form, which comes back here
    afterwards.
    """
    session = await current_session(request)
    if session is None:
        return to_sign_in(request.rel_url.raw_path)
    store = request.app[WORKSPACE].store
    view = await asyncio.to_thread(_read_alert, store, session, request.match_info["alert_id"])
    if view is None:
        return not_found(request, session)
    return render(request, "alert.html", {
        "session": session, "alert": view.alert, "state": view.state, "events": view.events,
        "history": [{"entry": h, "outcome": OUTCOME_LABELS.get(h.outcome or "")} for h in view.history],
        "deliveries": [{"delivery": d, "recipient": view.recipients.get(d.delivery_id),
                        "record_only": d.channel in RECORD_SINKS} for d in view.alert.deliveries],
        "incident": view.incident, "terminals": view.terminals,
        "context_minutes": int(TERMINAL_CONTEXT.total_seconds() // 60),
        "can_acknowledge": view.state in ("open", "notified", "failed"),
        "can_resolve": view.state == "acknowledged", "outcomes": OUTCOME_LABELS,
        "max_note": MAX_NOTE_CHARS,
        "recovery": recovery_shown(view.recovery, page_translator(request, session),
                                   kinds=view.recovery_kinds)})


async def acknowledge(request: web.Request) -> web.Response:
    """``POST /workspace/alerts/{alert_id}/acknowledge``: acknowledge one of the manager's alerts."""
    return await _act(request, "acknowledge")


async def resolve(request: web.Request) -> web.Response:
    """``POST /workspace/alerts/{alert_id}/resolve``: resolve one of the manager's alerts with an outcome."""
    return await _act(request, "resolve")


async def _act(request: web.Request, what: str) -> web.Response:
    """Check the session, the CSRF token, the form and the alert's owner; then apply ``what``."""
    session = await current_session(request)
    if session is None:
        return to_sign_in()
    workspace = request.app[WORKSPACE]
    form = await request.post()
    if not csrf_ok(request, session, form):
        return csrf_refused(request, session)
    note = form.get("note")
    note = note if isinstance(note, str) else ""
    if len(note) > MAX_NOTE_CHARS:
        return refused(request, 400, N_("Note too long"),
                       N_("A note can have at most %(max)s characters."), session, max=MAX_NOTE_CHARS)
    outcome = form.get("outcome") if what == "resolve" else None
    if what == "resolve" and (not isinstance(outcome, str) or outcome not in OUTCOME_LABELS):
        return refused(request, 400, N_("Choose an outcome"),
                       N_("Say what was done: choose one of the outcomes."), session)
    store = workspace.store
    alert_id = request.match_info["alert_id"]

    def apply() -> bool:
        alert = store.get_alert(alert_id)
        if alert is None or not may_see_alert(session, alert):
            return False
        if what == "acknowledge":
            store.acknowledge(alert_id, by=session.manager_id, via=VIA, note=note or None)
        else:
            store.resolve(alert_id, by=session.manager_id, via=VIA, note=note or None,
                          outcome=str(outcome))
        return True

    try:
        applied = await asyncio.to_thread(apply)
    except StateConflictError as error:
        words = page_translator(request, session)
        return refused(request, 409, N_("Not possible now"),
                       N_("This alert is %(state)s, so it cannot be %(action)s now."), session,
                       state=words.gettext(error.state),
                       action=words.gettext(N_("acknowledged") if what == "acknowledge"
                                            else N_("resolved")))
    if not applied:
        return not_found(request, session)
    log.info("workspace: %s did %s on alert %s", session.manager_id, what, alert_id)
    return redirect(f"/workspace/alerts/{quote(alert_id, safe='')}")
