"""The workspace's sign-in routes: ask for a link, confirm it, use it once, sign out.

A link is checked twice: its signature and age (:class:`~monitor.workspace.tokens.SignInTokens`)
and its single use (the alert store records each used token ID, so of two instances
racing on one link exactly one signs in). ``GET`` only shows a button, so a mail
scanner that prefetches the link uses nothing up; ``POST`` signs in, refused when its
``Origin`` is another site's.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from monitor.i18n import N_
from monitor.workspace.access import home_page
from monitor.workspace.mailer import MAX_WHO_CHARS
from monitor.workspace.returning import next_query, safe_next
from monitor.workspace.tokens import InvalidSignInError
from monitor.workspace.web import (
    SESSION_COOKIE,
    WORKSPACE,
    cross_site,
    csrf_ok,
    csrf_refused,
    current_session,
    redirect,
    refused,
    render,
    secure,
    to_sign_in,
)

__all__ = ["ask_for_link", "confirm_sign_in", "sign_in", "sign_in_form", "sign_out"]

log = logging.getLogger("monitor.workspace")

_NOT_VALID = N_("This sign-in link is not valid. Ask for a new sign-in link.")
_USED = N_("This sign-in link was already used. Ask for a new sign-in link.")


async def sign_in_form(request: web.Request) -> web.Response:
    """``GET /workspace/sign-in[?next=]``: the form asking for a manager ID or e-mail address."""
    return render(request, "sign_in.html", {"session": None, "max_who": MAX_WHO_CHARS,
                                             "next": safe_next(request.query.get("next"))})


async def ask_for_link(request: web.Request) -> web.Response:
    """``POST /workspace/sign-in``: send a link if the manager exists and the throttle allows; the same answer regardless."""
    form = await request.post()
    who = form.get("who")
    workspace = request.app[WORKSPACE]
    if isinstance(who, str) and who.strip() and len(who) <= MAX_WHO_CHARS:
        # Counted per person, however the form names them (ID or address): a lookup in
        # memory, so the answer's time still says nothing.
        person = workspace.mailer.find(who)
        if workspace.throttle.allow(person.person_id if person is not None else who, request.remote):
            workspace.send_in_background(who, safe_next(form.get("next")))
    minutes = max(1, request.app[WORKSPACE].tokens.max_age_seconds // 60)
    return render(request, "link_sent.html", {"session": None, "minutes": minutes})


def _check_token(request: web.Request) -> tuple[str, Any] | web.Response:
    workspace = request.app[WORKSPACE]
    try:
        claim = workspace.tokens.verify(request.match_info["token"])
    except InvalidSignInError as error:
        return refused(request, 403, N_("Link refused"),
                       N_("This sign-in link has expired. Ask for a new sign-in link.")
                       if error.reason == "expired" else _NOT_VALID)
    person = workspace.mailer.people.get(claim.manager_id)
    if person is None:
        return refused(request, 403, N_("Link refused"), _NOT_VALID)
    return person.name, claim


async def confirm_sign_in(request: web.Request) -> web.Response:
    """``GET /workspace/sign-in/{token}``: check the link and show a button; uses nothing up."""
    checked = _check_token(request)
    if isinstance(checked, web.Response):
        return checked
    name, claim = checked
    if await asyncio.to_thread(request.app[WORKSPACE].store.sign_in_token_used, claim.token_id):
        return refused(request, 403, N_("Link refused"), _USED)
    return render(request, "confirm.html", {"session": None, "name": name,
                                             "action": request.path + next_query(request.query.get("next"))})


async def sign_in(request: web.Request) -> web.Response:
    """``POST /workspace/sign-in/{token}[?next=]``: use the link once, open a session, go to
    ``next`` (a safe workspace path) or the person's first page."""
    if cross_site(request):
        return refused(request, 403, N_("Sign-in refused"), N_("This form was sent from another site."))
    checked = _check_token(request)
    if isinstance(checked, web.Response):
        return checked
    _, claim = checked
    workspace = request.app[WORKSPACE]
    first_use = await asyncio.to_thread(workspace.store.use_sign_in_token, claim.token_id,
                                        claim.manager_id, expires_at=claim.expires_at,
                                        now=datetime.now(UTC))
    if not first_use:
        return refused(request, 403, N_("Link refused"),
                       _USED)
    session = await workspace.sessions.open(claim.manager_id)
    log.info("workspace: %s signed in", claim.manager_id)
    person = workspace.mailer.people.get(claim.manager_id)
    response = redirect(safe_next(request.query.get("next"))
                        or home_page(person.roles if person else frozenset()))
    response.set_cookie(SESSION_COOKIE, session.session_id, path="/workspace",
                        max_age=workspace.sessions.max_age_seconds, httponly=True,
                        samesite="Lax", secure=secure(request) or None)
    return response


async def sign_out(request: web.Request) -> web.Response:
    """``POST /workspace/sign-out``: revoke the session (its CSRF token required)."""
    session = await current_session(request)
    if session is None:
        return to_sign_in()
    form = await request.post()
    if not csrf_ok(request, session, form):
        return csrf_refused(request, session)
    await request.app[WORKSPACE].sessions.revoke(session)
    log.info("workspace: manager %s signed out", session.manager_id)
    response = redirect("/workspace/sign-in")
    response.del_cookie(SESSION_COOKIE, path="/workspace")
    return response
