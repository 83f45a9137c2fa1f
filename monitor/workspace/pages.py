"""The workspace's routes: sign-in, sign-out and the manager's alerts (server-rendered HTML).

:func:`build_workspace` returns an aiohttp sub-application, mounted at ``/workspace`` by
:func:`monitor.api.build_api`:

=========================================  ==================================================
``GET  /workspace/sign-in``                the form: a manager ID or e-mail address
``POST /workspace/sign-in``                mails a link (in the background); one answer
                                           whatever happened
``GET  /workspace/sign-in/{token}``        checks the link, shows a "Sign in" button; a
                                           mail scanner that prefetches it uses nothing up
``POST /workspace/sign-in/{token}``        uses the link once, opens a session (cookie),
                                           303 to ``/workspace/alerts``
``POST /workspace/sign-out``               revokes the session (CSRF token required)
``GET  /workspace/alerts``                 the signed-in manager's clients' alerts: open
                                           first, then by severity, oldest first
``GET  /workspace/alerts/{alert_id}``      one of them with its history; anyone else's (or
                                           none) is 404
``POST /workspace/alerts/{id}/acknowledge`` acknowledge it (optional note); 303 back to it
``POST /workspace/alerts/{id}/resolve``    resolve it with an outcome (:data:`OUTCOME_LABELS`)
                                           and a note; 303 back to it
=========================================  ==================================================

The cookie :data:`SESSION_COOKIE` is HttpOnly, SameSite=Lax, ``Secure`` when the request
came over TLS or the public URL is ``https`` (a TLS proxy in front), limited to ``/workspace`` and expires with the session. Every ``POST`` made
inside a session carries its CSRF token; the sign-in ``POST`` (no session yet) is refused
when its ``Origin`` is neither this server's nor the public URL's. Templates are jinja2 with autoescape. Pages are
never cached, never framed and send a ``Referer`` only to this site (a sign-in link's token
is in its path).

Acknowledge and resolve use the store's lifecycle calls with the session's manager as
``by`` and ``via="workspace"``, so the alert's history says who did it, when and from
where. Another manager's alert (or none) answers 404 and nothing changes; a form without
the session's CSRF token answers 403; resolving before acknowledging answers 409.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web

from monitor.alerts.states import AlertState, StateConflictError
from monitor.alerts.store import AlertStore
from monitor.domain import SEVERITIES, Alert
from monitor.workspace.mailer import MAX_WHO_CHARS, SignInMailer
from monitor.workspace.outcomes import OUTCOME_LABELS
from monitor.workspace.sessions import Session, Sessions
from monitor.workspace.tokens import InvalidSignInError, SignInTokens

__all__ = ["SESSION_COOKIE", "VIA", "Workspace", "build_workspace"]

log = logging.getLogger("monitor.workspace")

#: The session cookie's name.
SESSION_COOKIE: Final = "cardmon_session"
#: How many of a manager's alerts the list shows (newest recorded first, then sorted).
ALERT_LIMIT: Final = 200
_DONE_STATES: Final[frozenset[AlertState]] = frozenset({"acknowledged", "resolved"})
#: The ``via`` the workspace's acknowledgements and resolutions record in the history.
VIA: Final = "workspace"
#: The longest note the forms accept (the store keeps at most 2,000 characters).
MAX_NOTE_CHARS: Final = 1000
_RANK: Final = {severity: rank for rank, severity in enumerate(SEVERITIES)}
# Seconds the app's cleanup waits for sign-in mails still being sent.
_SEND_GRACE_SECONDS: Final = 15.0
_PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    # same-origin, not no-referrer: a Referer (the token is in a sign-in link's path) never
    # leaves this site, and browsers send this site's Origin on its own forms' POSTs (under
    # no-referrer Chromium sends "Origin: null", which the sign-in's origin check refuses).
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


@dataclass(slots=True, kw_only=True)
class Workspace:
    """What the workspace's pages need.

    Attributes:
        store: the alert store (alerts, sign-in tokens, sessions).
        tokens: checks sign-in tokens.
        sessions: opens, finds and revokes sessions.
        mailer: sends sign-in links.
    """

    store: AlertStore
    tokens: SignInTokens
    sessions: Sessions
    mailer: SignInMailer
    _sending: set[asyncio.Task[bool]] = field(default_factory=set, repr=False)

    def send_in_background(self, who: str) -> None:
        """Send a sign-in link without making the request wait (its time says nothing)."""
        task = asyncio.create_task(self.mailer.send(who), name="cardmon-workspace-sign-in")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def close(self) -> None:
        """Wait briefly for sign-in mails still being sent, then cancel the rest."""
        pending = set(self._sending)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=_SEND_GRACE_SECONDS)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


WORKSPACE: Final = web.AppKey("workspace", Workspace)


def build_workspace(workspace: Workspace) -> web.Application:
    """The workspace sub-application (mount it at ``/workspace``)."""
    app = web.Application()
    app[WORKSPACE] = workspace
    aiohttp_jinja2.setup(app, loader=jinja2.PackageLoader("monitor.workspace", "templates"),
                         autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                         undefined=jinja2.StrictUndefined)

    async def close(_: web.Application) -> None:
        await workspace.close()

    app.on_cleanup.append(close)
    app.router.add_get("/sign-in", sign_in_form)
    app.router.add_post("/sign-in", ask_for_link)
    app.router.add_get("/sign-in/{token}", confirm_sign_in)
    app.router.add_post("/sign-in/{token}", sign_in)
    app.router.add_post("/sign-out", sign_out)
    app.router.add_get("/alerts", alerts_page)
    app.router.add_get("/alerts/{alert_id}", alert_page)
    app.router.add_post("/alerts/{alert_id}/acknowledge", acknowledge)
    app.router.add_post("/alerts/{alert_id}/resolve", resolve)
    return app


def _render(request: web.Request, template: str, context: dict[str, Any], *,
            status: int = 200) -> web.Response:
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    response.headers.update(_PAGE_HEADERS)
    return response


def _refused(request: web.Request, status: int, title: str, message: str) -> web.Response:
    return _render(request, "message.html", {"title": title, "message": message, "session": None},
                   status=status)


async def _session(request: web.Request) -> Session | None:
    """The request's live session, if its manager is still in the registry."""
    workspace = request.app[WORKSPACE]
    session = await workspace.sessions.find(request.cookies.get(SESSION_COOKIE))
    if session is None or not workspace.mailer.known(session.manager_id):
        return None
    return session


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={**_PAGE_HEADERS, "Location": location})


def _to_sign_in() -> web.Response:
    return _redirect("/workspace/sign-in")


def _cross_site(request: web.Request) -> bool:
    """Whether a POST came from another site's page (its ``Origin`` is neither ours nor the public URL's)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    public = urlsplit(request.app[WORKSPACE].mailer.public_url)
    return origin not in (f"{request.scheme}://{request.host}", f"{public.scheme}://{public.netloc}")


def _secure(request: web.Request) -> bool:
    """Whether the browser reached us over TLS: this request did, or the public URL is ``https``
    (a TLS-terminating proxy in front of cardmon)."""
    return request.secure or request.app[WORKSPACE].mailer.public_url.startswith("https://")


async def sign_in_form(request: web.Request) -> web.Response:
    """``GET /workspace/sign-in``: the form asking for a manager ID or e-mail address."""
    return _render(request, "sign_in.html", {"session": None, "max_who": MAX_WHO_CHARS})


async def ask_for_link(request: web.Request) -> web.Response:
    """``POST /workspace/sign-in``: send a link if the manager exists; the same answer regardless."""
    form = await request.post()
    who = form.get("who")
    if isinstance(who, str) and who.strip() and len(who) <= MAX_WHO_CHARS:
        request.app[WORKSPACE].send_in_background(who)
    minutes = max(1, request.app[WORKSPACE].tokens.max_age_seconds // 60)
    return _render(request, "link_sent.html", {"session": None, "minutes": minutes})


def _check_token(request: web.Request) -> tuple[str, Any] | web.Response:
    workspace = request.app[WORKSPACE]
    try:
        claim = workspace.tokens.verify(request.match_info["token"])
    except InvalidSignInError as error:
        return _refused(request, 403, "Link refused",
                        f"{str(error).capitalize()}. Ask for a new sign-in link.")
    manager = workspace.mailer.find(claim.manager_id) if workspace.mailer.known(claim.manager_id) else None
    if manager is None:
        return _refused(request, 403, "Link refused",
                        "This sign-in link is not valid. Ask for a new sign-in link.")
    return manager.name, claim


async def confirm_sign_in(request: web.Request) -> web.Response:
    """``GET /workspace/sign-in/{token}``: check the link and show a button; uses nothing up."""
    checked = _check_token(request)
    if isinstance(checked, web.Response):
        return checked
    name, _ = checked
    return _render(request, "confirm.html", {"session": None, "name": name,
                                             "action": request.path})


async def sign_in(request: web.Request) -> web.Response:
    """``POST /workspace/sign-in/{token}``: use the link once, open a session, go to the alerts."""
    if _cross_site(request):
        return _refused(request, 403, "Sign-in refused", "This form was sent from another site.")
    checked = _check_token(request)
    if isinstance(checked, web.Response):
        return checked
    _, claim = checked
    workspace = request.app[WORKSPACE]
    first_use = await asyncio.to_thread(workspace.store.use_sign_in_token, claim.token_id,
                                        claim.manager_id, expires_at=claim.expires_at,
                                        now=datetime.now(UTC))
    if not first_use:
        return _refused(request, 403, "Link refused",
                        "This sign-in link was already used. Ask for a new sign-in link.")
    session = await workspace.sessions.open(claim.manager_id)
    log.info("workspace: manager %s signed in", claim.manager_id)
    response = _redirect("/workspace/alerts")
    response.set_cookie(SESSION_COOKIE, session.session_id, path="/workspace",
                        max_age=workspace.sessions.max_age_seconds, httponly=True,
                        samesite="Lax", secure=_secure(request) or None)
    return response


async def sign_out(request: web.Request) -> web.Response:
    """``POST /workspace/sign-out``: revoke the session (its CSRF token required)."""
    session = await _session(request)
    if session is None:
        return _to_sign_in()
    form = await request.post()
    if not request.app[WORKSPACE].sessions.check_csrf(session, form.get("csrf_token")):
        return _refused(request, 403, "Request refused",
                        "This form has expired or did not come from this page. Reload and try again.")
    await request.app[WORKSPACE].sessions.revoke(session)
    log.info("workspace: manager %s signed out", session.manager_id)
    response = _redirect("/workspace/sign-in")
    response.del_cookie(SESSION_COOKIE, path="/workspace")
    return response


def _order(alert: Alert, state: AlertState) -> tuple[int, int, datetime, str]:
    return (state in _DONE_STATES, -_RANK.get(alert.severity, 0), alert.created_at, alert.alert_id)


async def alerts_page(request: web.Request) -> web.Response:
    """``GET /workspace/alerts``: the manager's own clients' alerts, open first, by severity and age."""
    session = await _session(request)
    if session is None:
        return _to_sign_in()
    store = request.app[WORKSPACE].store
    page = await asyncio.to_thread(store.find_alerts, manager_id=session.manager_id,
                                   limit=ALERT_LIMIT)
    alerts = sorted(page.alerts, key=lambda a: _order(a, page.states[a.alert_id]))
    rows = [{"alert": a, "state": page.states[a.alert_id], "open": page.states[a.alert_id] not in _DONE_STATES}
            for a in alerts]
    return _render(request, "alerts.html", {"session": session, "rows": rows,
                                            "more": page.next_cursor is not None})


def _not_found(request: web.Request, session: Session) -> web.Response:
    return _render(request, "message.html", {
        "title": "Not found", "message": "There is no such alert among your clients' alerts.",
        "session": session}, status=404)


async def alert_page(request: web.Request) -> web.Response:
    """``GET /workspace/alerts/{alert_id}``: one of the manager's alerts with its history; any other answers 404."""
    session = await _session(request)
    if session is None:
        return _to_sign_in()
    store = request.app[WORKSPACE].store
    alert_id = request.match_info["alert_id"]

    def read() -> tuple[Alert, AlertState | None, list[Any], list[Any]] | None:
        alert = store.get_alert(alert_id)
        if alert is None or alert.manager.manager_id != session.manager_id:
            return None
        return alert, store.state_of(alert_id), store.alert_events(alert_id), store.history(alert_id)

    found = await asyncio.to_thread(read)
    if found is None:
        return _not_found(request, session)
    alert, state, events, history = found
    return _render(request, "alert.html", {
        "session": session, "alert": alert, "state": state, "events": events,
        "history": [{"entry": h, "outcome": OUTCOME_LABELS.get(h.outcome or "")} for h in history],
        "can_acknowledge": state in ("open", "notified", "failed"),
        "can_resolve": state == "acknowledged", "outcomes": OUTCOME_LABELS,
        "max_note": MAX_NOTE_CHARS})


async def acknowledge(request: web.Request) -> web.Response:
    """``POST /workspace/alerts/{alert_id}/acknowledge``: acknowledge one of the manager's alerts."""
    return await _act(request, "acknowledge")


async def resolve(request: web.Request) -> web.Response:
    """``POST /workspace/alerts/{alert_id}/resolve``: resolve one of the manager's alerts with an outcome."""
    return await _act(request, "resolve")


async def _act(request: web.Request, what: str) -> web.Response:
    """Check the session, the CSRF token, the form and the alert's owner; then apply ``what``."""
    session = await _session(request)
    if session is None:
        return _to_sign_in()
    workspace = request.app[WORKSPACE]
    form = await request.post()
    if not workspace.sessions.check_csrf(session, form.get("csrf_token")):
        return _refused(request, 403, "Request refused",
                        "This form has expired or did not come from this page. Reload and try again.")
    note = form.get("note")
    note = note if isinstance(note, str) else ""
    if len(note) > MAX_NOTE_CHARS:
        return _render(request, "message.html", {
            "title": "Note too long", "session": session,
            "message": f"A note can have at most {MAX_NOTE_CHARS} characters."}, status=400)
    outcome = form.get("outcome") if what == "resolve" else None
    if what == "resolve":
        if not isinstance(outcome, str) or outcome not in OUTCOME_LABELS:
            return _render(request, "message.html", {
                "title": "Choose an outcome", "session": session,
                "message": "Say what was done: choose one of the outcomes."}, status=400)
    store = workspace.store
    alert_id = request.match_info["alert_id"]

    def apply() -> bool:
        alert = store.get_alert(alert_id)
        if alert is None or alert.manager.manager_id != session.manager_id:
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
        return _render(request, "message.html", {
            "title": "Not possible now", "session": session, "message": str(error)}, status=409)
    if not applied:
        return _not_found(request, session)
    log.info("workspace: manager %s did %s on alert %s", session.manager_id, what, alert_id)
    return _redirect(f"/workspace/alerts/{quote(alert_id, safe='')}")
