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
``GET  /workspace/clients/{customer_id}``  one client's alerts and failures of the last 90
                                           days (only alerts the session may see; none: 404)
``GET  /workspace/team``                   a team lead's team: alerts waiting, time to
                                           acknowledge (:mod:`~monitor.workspace.team_pages`)
``GET  /workspace/incidents[/{id}]``       operations: incidents, one incident
``GET  /workspace/terminals``              operations: terminals with VIP failures
                                           (:mod:`~monitor.workspace.operations_pages`)
=========================================  ==================================================

The cookie :data:`SESSION_COOKIE` is HttpOnly, SameSite=Lax, ``Secure`` when the request
came over TLS or the public URL is ``https`` (a TLS proxy in front), limited to ``/workspace`` and expires with the session. Every ``POST`` made
inside a session carries its CSRF token; the sign-in ``POST`` (no session yet) is refused
when its ``Origin`` is neither this server's nor the public URL's. Templates are jinja2 with autoescape. Pages are
never cached, never framed and send a ``Referer`` only to this site (a sign-in link's token
is in its path).

The routes live by concern: sign-in in :mod:`~monitor.workspace.signing_in`, alerts in
:mod:`~monitor.workspace.alert_pages`, the team lead's page in :mod:`~monitor.workspace.team_pages`,
operations' pages in :mod:`~monitor.workspace.operations_pages`, what they share in :mod:`~monitor.workspace.web`
and who may see what in :mod:`~monitor.workspace.access`.
"""

from __future__ import annotations

import aiohttp_jinja2
import jinja2
from aiohttp import web

from monitor.workspace.access import allowed_pages
from monitor.workspace.alert_pages import VIA, acknowledge, alert_page, alerts_page, resolve
from monitor.workspace.client_pages import client_page
from monitor.workspace.operations_pages import incident_page, incidents_page, terminals_page
from monitor.workspace.signing_in import (
    ask_for_link,
    confirm_sign_in,
    sign_in,
    sign_in_form,
    sign_out,
)
from monitor.workspace.team_pages import team_page
from monitor.workspace.web import SESSION_COOKIE, WORKSPACE, Workspace, money, money_of

__all__ = ["SESSION_COOKIE", "VIA", "Workspace", "build_workspace"]


def build_workspace(workspace: Workspace) -> web.Application:
    """The workspace sub-application (mount it at ``/workspace``)."""
    app = web.Application()
    app[WORKSPACE] = workspace
    env = aiohttp_jinja2.setup(
        app, loader=jinja2.PackageLoader("monitor.workspace", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined, extensions=["jinja2.ext.i18n"])
    # Templates mark their text with _("...") (newstyle: autoescaped, %-formatted);
    # English until the manager's locale picks a catalogue.
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    env.filters["money"] = money
    env.globals["money_of"] = money_of
    env.globals["allowed_pages"] = allowed_pages  # base.html's nav shows only the role's pages

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
    app.router.add_get("/clients/{customer_id}", client_page)
    app.router.add_get("/team", team_page)
    app.router.add_get("/incidents", incidents_page)
    app.router.add_get("/incidents/{incident_id}", incident_page)
    app.router.add_get("/terminals", terminals_page)
    return app
