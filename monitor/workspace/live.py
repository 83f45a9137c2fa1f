"""Live updates of the manager's alerts page: a server-sent event stream and the script reading it.

``GET /workspace/alerts/events`` (a session required, else 401) is a ``text/event-stream``
that carries, for each of the session's alerts that is new or has changed, one ``alert``
event whose data is a JSON object (:func:`alert_row`): the row the page shows. The
script ``/workspace/static/live.js`` (served by :func:`static_file`) opens it with
``EventSource`` and inserts or updates rows through DOM calls (``textContent``, never
``innerHTML``), announcing new alerts in the page's ``role="status"`` region. Without
the script the page still works: reload it.

How changes are found, step by step, every :data:`POLL_SECONDS`:

1. Read the alert versions of each manager the list shows (the session's own; a team
   lead's whole team, or the one manager of ``?manager=``) (:meth:`~monitor.alerts.store.AlertStore.alert_versions`:
   ``alert_id`` → state, event count, update time and recovery watch status, of the
   newest :data:`ALERT_LIMIT`, one indexed read without deliveries).
2. Compare with the versions last sent on this stream; if none differs, write nothing
   (a ``: keepalive`` comment every :data:`HEARTBEAT_SECONDS` keeps proxies from
   closing an idle stream).
3. Otherwise read those alerts as the list page does (with their recovery watches, so
   a watch decided as recovered or abandoned updates the row's badge), keep only those
   :func:`~monitor.workspace.access.may_see_alert` allows, and send each as an event;
   on a list filtered by state (``?state=``) an alert that left that state is sent as a
   removal. Operations staff (no alert list) get 404, like the page.

The store is the source of truth, so an alert recorded or acknowledged by any instance
sharing the PostgreSQL store (or by the API, the acknowledgement link, the CLI) shows
within one interval; a first pass on connecting sends every row, so nothing recorded
between the page's rendering and the stream's start is missed, and a reconnection
catches up the same way. PostgreSQL's ``LISTEN`` (:mod:`monitor.alerts.store.notify`) is
not used: it carries new outbox rows only (not acknowledgements or resolutions), a
SQLite store has nothing to listen to, and notifications lost while a connection is
down would need this poll anyway.

Bounds: at most :data:`MAX_STREAMS_PER_SESSION` streams per session (more answers 429)
and :data:`MAX_STREAMS` per instance (503). Every :data:`SESSION_CHECK_SECONDS` the
session is looked up again: signed out, revoked or expired, the stream sends a
``signed-out`` event and ends. At the application's shutdown (``on_shutdown``) every
stream ends at once, so the server closes without waiting for them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any, Final
from urllib.parse import quote

from aiohttp import web

from monitor.alerts.messages.local import local_time
from monitor.alerts.states import ALERT_STATES, AlertState
from monitor.alerts.store import AlertStore
from monitor.alerts.store.db import DATABASE_ERRORS, is_transient
from monitor.domain import Alert
from monitor.i18n import DEFAULT_LOCALE, Translator
from monitor.workspace.access import may_see_alert, may_see_page, visible_managers
from monitor.workspace.alert_pages import ALERT_LIMIT, DONE_STATES, row_order
from monitor.workspace.sessions import Session, session_hash
from monitor.workspace.web import (
    PAGE_HEADERS,
    WORKSPACE,
    current_session,
    not_found,
    page_translator,
)

__all__ = [
    "HEARTBEAT_SECONDS",
    "LIVE",
    "MAX_STREAMS",
    "MAX_STREAMS_PER_SESSION",
    "POLL_SECONDS",
    "SESSION_CHECK_SECONDS",
    "LiveStreams",
    "add_live_routes",
    "alert_events",
    "alert_row",
    "static_file",
]

log = logging.getLogger("monitor.workspace")

#: How often a stream reads the store (seconds): a change shows within this delay,
#: at the cost of one small indexed read per open page and interval.
POLL_SECONDS: Final = 1.5
#: An idle stream writes a comment this often (seconds): proxies close connections
#: silent for 30–60 s.
HEARTBEAT_SECONDS: Final = 15.0
#: How often a stream checks that its session still lives (seconds).
SESSION_CHECK_SECONDS: Final = 15.0
#: Streams one session may hold open at once (a few tabs); more answers 429.
MAX_STREAMS_PER_SESSION: Final = 4
#: Streams one instance holds open at once; more answers 503.
MAX_STREAMS: Final = 500
#: What ``EventSource`` waits before reconnecting after a dropped stream (milliseconds).
RETRY_MILLISECONDS: Final = 5000
#: The static files the workspace serves: ``name`` → content type.
_STATIC: Final = {"live.js": "text/javascript; charset=utf-8"}
_SINCE_LAYOUT: Final = "%Y-%m-%d %H:%M %Z"
# The recovery statuses the list marks with a badge (templates/recovery_badge.html).
_BADGES: Final = frozenset({"recovered", "abandoned"})


@dataclass(slots=True)
class LiveStreams:
    """The open event streams of one workspace application: bounds them, ends them at shutdown.

    Args:
        per_session: streams one session may hold at once.
        total: streams the application holds at once.
    """

    per_session: int = MAX_STREAMS_PER_SESSION
    total: int = MAX_STREAMS
    _open: dict[str, int] = field(default_factory=dict)  # <session hash: its open streams>
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def open_count(self) -> int:
        """How many streams are open now."""
        return sum(self._open.values())

    @property
    def stopping(self) -> bool:
        """Whether the application is shutting down (no stream starts, every stream ends)."""
        return self._stopping.is_set()

    def admit(self, session: Session) -> str | None:
        """Count one more stream of ``session``; ``None`` if admitted, else why not (``"session"``, ``"total"``)."""
        key = session_hash(session.session_id)
        if self._open.get(key, 0) >= self.per_session:
            return "session"
        if self.open_count >= self.total:
            return "total"
        self._open[key] = self._open.get(key, 0) + 1
        return None

    def release(self, session: Session) -> None:
        """Count one stream of ``session`` fewer."""
        key = session_hash(session.session_id)
        left = self._open.get(key, 0) - 1
        if left > 0:
            self._open[key] = left
        else:
            self._open.pop(key, None)

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if the application stops; whether it is stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def stop(self) -> None:
        """End every stream (at their next step, at once for those waiting)."""
        self._stopping.set()


#: The sub-application's key of its :class:`LiveStreams`.
LIVE: Final = web.AppKey("workspace-live", LiveStreams)


def alert_row(alert: Alert, state: AlertState, translator: Translator | None = None, *,
              recovery: str | None = None) -> dict[str, Any]:
    """An alert as the list shows it, for an ``alert`` event, in the reader's language and zone.

    Args:
        alert: the alert.
        state: its lifecycle state.
        translator: the reader (``None``: English, UTC).
        recovery: its recovery watch's status (``watching``, ``recovered``,
            ``abandoned``; ``None``: no watch).

    Returns:
        ``{"id", "url", "customer_name", "manager_name", "tier", "severity" (the class
        name), "severity_text", "state", "state_text", "open" (bool), "event_count",
        "since" (first failure in the reader's zone, as the page writes it), "order",
        "recovery" (``recovered`` or ``abandoned``: the badge to show, else ``None``),
        "recovery_text" (the badge's word in the reader's language, else ``""``)}``;
        rows sort by ``order`` (a string: open first, then by severity, oldest first). A
        team lead's list shows ``manager_name`` in its own column.
    """
    reader = translator or Translator(DEFAULT_LOCALE)
    badge = recovery if recovery in _BADGES else None
    return {"id": alert.alert_id, "url": f"/workspace/alerts/{quote(alert.alert_id, safe='')}",
            "customer_name": alert.customer_name, "manager_name": alert.manager.name,
            "tier": alert.tier, "severity": alert.severity,
            "severity_text": reader.gettext(alert.severity), "state": state,
            "state_text": reader.gettext(state), "open": state not in DONE_STATES,
            "event_count": alert.event_count,
            "since": local_time(reader, alert.first_event_at, _SINCE_LAYOUT),
            "order": row_order(alert, state),
            "recovery": badge, "recovery_text": reader.gettext(badge) if badge else ""}


@dataclass(frozen=True, slots=True)
class ListFilter:
    """What the list page shows: the managers whose alerts (all the session may see, or one
    of its team) and the state (``None``: any), from the page's ``manager`` and ``state``."""

    managers: tuple[str, ...]
    state: str | None

    @classmethod
    def of(cls, session: Session, query: Mapping[str, str]) -> ListFilter:
        """The filter of a request's query, narrowed to what the session may see."""
        visible = visible_managers(session)
        one = query.get("manager", "")
        state = query.get("state", "")
        return cls(managers=(one,) if one in visible else tuple(sorted(visible)),
                   state=state if state in ALERT_STATES else None)


def _changes(store: AlertStore, session: Session, wanted: ListFilter, sent: dict[str, str],
             translator: Translator | None = None) -> list[dict[str, Any]]:
    """The rows of the list's alerts new or changed since ``sent`` (updated in place); runs in a thread.

    A changed alert the filter no longer shows (acknowledged, on a list of open alerts)
    is sent as ``{"id", "remove": true}``.
    """
    versions: dict[str, str] = {}
    for manager_id in wanted.managers:
        versions.update(store.alert_versions(manager_id, limit=ALERT_LIMIT))
    changed = {alert_id for alert_id, version in versions.items() if sent.get(alert_id) != version}
    rows: list[dict[str, Any]] = []
    if changed:
        watches = store.recoveries_of(sorted(changed))
        for manager_id in wanted.managers:
            page = store.find_alerts(manager_id=manager_id, limit=ALERT_LIMIT)
            for alert in page.alerts:
                if alert.alert_id not in changed or not may_see_alert(session, alert):
                    continue
                state = page.states[alert.alert_id]
                watch = watches.get(alert.alert_id)
                rows.append({"id": alert.alert_id, "remove": True}
                            if wanted.state is not None and state != wanted.state
                            else alert_row(alert, state, translator,
                                           recovery=watch.status if watch else None))
    sent.clear()  # only the list's alerts: an alert older than the newest ALERT_LIMIT is dropped
    sent.update(versions)
    return rows


def _event(name: str, data: object) -> bytes:
    # json.dumps escapes newlines, so the data is one line of the event.
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


async def alert_events(request: web.Request) -> web.StreamResponse:
    """``GET /workspace/alerts/events``: the session's new and changed alerts as server-sent events."""
    session = await current_session(request)
    if session is None:
        return web.Response(status=401, text="Sign in to the workspace first.\n", headers=PAGE_HEADERS)
    if not may_see_page(session, "alerts"):
        return not_found(request, session, "There is no such page among yours.")
    live = request.app[LIVE]
    refused = "total" if live.stopping else live.admit(session)
    if refused is not None:
        status = 429 if refused == "session" else 503
        return web.Response(status=status, text="Too many live pages open; reload later.\n",
                            headers={**PAGE_HEADERS, "Retry-After": "30"})
    try:
        response = web.StreamResponse(headers={
            **PAGE_HEADERS, "Content-Type": "text/event-stream; charset=utf-8",
            "X-Accel-Buffering": "no"})  # nginx: pass each event on at once
        await response.prepare(request)
        await _stream(request, response, session, live, ListFilter.of(session, request.query))
    finally:
        live.release(session)
    return response


async def _stream(request: web.Request, response: web.StreamResponse, session: Session,
                  live: LiveStreams, wanted: ListFilter) -> None:
    """Poll the store and write events until the client leaves, the session ends or the app stops."""
    store = request.app[WORKSPACE].store
    loop = asyncio.get_running_loop()
    sent: dict[str, str] = {}  # <alert_id: version last sent>
    translator = page_translator(request, session)  # the rows in the reader's language and zone
    last_write = checked = loop.time()
    unavailable = False  # whether the last poll found the store unavailable
    try:
        await response.write(f"retry: {RETRY_MILLISECONDS}\n\n".encode())
        while not live.stopping and not _gone(request):
            now = loop.time()
            try:
                if now - checked >= SESSION_CHECK_SECONDS:
                    checked = now
                    if await current_session(request) is None:
                        await response.write(_event("signed-out", {}))
                        return
                rows = await asyncio.to_thread(_changes, store, session, wanted, sent, translator)
                unavailable = False
            except DATABASE_ERRORS as error:
                if not is_transient(error):  # the stream ends; the browser reconnects later
                    log.error("workspace live updates: the alert store failed (%s)",
                              type(error).__name__)
                    return
                if not unavailable:  # once per outage, not once per poll
                    log.warning("workspace live updates: the alert store is unavailable (%s); "
                                "retrying", type(error).__name__)
                unavailable = True
                rows = []
            for row in rows:
                await response.write(_event("alert", row))
            if rows:
                last_write = now
            elif now - last_write >= HEARTBEAT_SECONDS:
                await response.write(b": keepalive\n\n")
                last_write = now
            if await live.pause(POLL_SECONDS):
                return
    except ConnectionError:
        # The browser left (aiohttp raises ClientConnectionResetError, a ConnectionError):
        # nothing to clean up but the count, which the handler does.
        return


async def static_file(request: web.Request) -> web.Response:
    """``GET /workspace/static/{name}``: the workspace's own script (no session needed)."""
    name = request.match_info["name"]
    content_type = _STATIC.get(name)
    if content_type is None:
        raise web.HTTPNotFound()
    body = (files("monitor.workspace") / "static" / name).read_bytes()
    return web.Response(body=body, headers={
        "Content-Type": content_type, "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff"})


def add_live_routes(app: web.Application) -> None:
    """Add the event stream and the static files to the workspace sub-application.

    Call it before ``/alerts/{alert_id}`` is routed (``events`` would match that route).
    """
    live = LiveStreams()
    app[LIVE] = live

    async def stop(_: web.Application) -> None:
        live.stop()

    app.on_shutdown.append(stop)
    app.router.add_get("/alerts/events", alert_events, allow_head=False)
    app.router.add_get("/static/{name}", static_file)
