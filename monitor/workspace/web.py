"""What every workspace page shares: the :class:`Workspace`, its app key, and the helpers of a page.

The route modules (:mod:`~monitor.workspace.signing_in`, :mod:`~monitor.workspace.alert_pages`,
and any new page) build on this one; :mod:`~monitor.workspace.pages` assembles them.

- :func:`render` renders a jinja2 template (autoescaped) with the page headers: never
  cached, never framed, a ``Referer`` only to this site (a sign-in link's token is in its
  path), a Content-Security-Policy without scripts from elsewhere. It speaks the reader's
  language (:func:`page_translator`): ``_()``/``ngettext()`` translate, ``t`` formats
  dates, times and money, ``lang`` is the page's ``<html lang>``.
- :func:`current_session` is the request's live session (``None``: send to sign-in).
- :func:`csrf_ok` checks a form's CSRF token against the session; :func:`refused`,
  :func:`not_found`, :func:`redirect` and :func:`to_sign_in` are the usual answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup

from monitor.alerts.messages.alert import format_amount
from monitor.alerts.messages.local import local_time
from monitor.alerts.store import AlertStore
from monitor.domain import AlertEvent
from monitor.health.state_rules import HealthState
from monitor.i18n import DEFAULT_LOCALE, N_, LocaleError, Translator, negotiate, translations
from monitor.workspace.mailer import SignInMailer
from monitor.workspace.returning import next_query
from monitor.workspace.sessions import Session, Sessions
from monitor.workspace.throttle import SignInThrottle
from monitor.workspace.tokens import SignInTokens

__all__ = [
    "LIVE_PAGE_POLICY",
    "PAGE_HEADERS",
    "SESSION_COOKIE",
    "WORKSPACE",
    "Workspace",
    "cross_site",
    "csrf_ok",
    "csrf_refused",
    "current_session",
    "money",
    "money_of",
    "not_found",
    "page_translator",
    "redirect",
    "refused",
    "render",
    "secure",
    "to_sign_in",
]

#: The session cookie's name.
SESSION_COOKIE: Final = "cardmon_session"
# Seconds the app's cleanup waits for sign-in mails still being sent.
_SEND_GRACE_SECONDS: Final = 15.0
#: Headers of every workspace answer.
PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    # same-origin, not no-referrer: a Referer (the token is in a sign-in link's path) never
    # leaves this site, and browsers send this site's Origin on its own forms' POSTs (under
    # no-referrer Chromium sends "Origin: null", which the sign-in's origin check refuses).
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
#: The policy of a page with live updates: the same, plus this site's own scripts
#: (``/workspace/static/``) and their connections back to it (the event stream).
LIVE_PAGE_POLICY: Final = ("default-src 'none'; script-src 'self'; connect-src 'self'; "
                           "style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; "
                           "base-uri 'none'")


@dataclass(slots=True, kw_only=True)
class Workspace:
    """What the workspace's pages need.

    Attributes:
        store: the alert store (alerts, sign-in tokens, sessions).
        tokens: checks sign-in tokens.
        sessions: opens, finds and revokes sessions.
        mailer: sends sign-in links.
        terminal_health: a terminal's live health state and reasons at the health book's
            last evaluation (``HealthBook.state_of``; the monitor sets it), ``None`` where
            the book is not in this process (the terminals page then shows the store's only).
        impact_classes: the outcome classes that are a terminal's own, for the terminals
            page's ranking (``rules/health.yaml`` ``aggregate.classes``; the monitor sets it).
        throttle: bounds how often links are sent (per person, per client address).
    """

    store: AlertStore
    tokens: SignInTokens
    sessions: Sessions
    mailer: SignInMailer
    terminal_health: Callable[[str], tuple[HealthState, list[str]] | None] | None = None
    impact_classes: tuple[str, ...] = ("technical", "terminal", "card")
    throttle: SignInThrottle = field(default_factory=SignInThrottle)
    _sending: set[asyncio.Task[bool]] = field(default_factory=set, repr=False)

    def send_in_background(self, who: str, next_path: str | None = None) -> None:
        """Send a sign-in link (returning to ``next_path`` if safe) without making the request wait (its time says nothing)."""
        task = asyncio.create_task(self.mailer.send(who, next_path), name="cardmon-workspace-sign-in")
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


#: The sub-application's key of its :class:`Workspace`.
WORKSPACE: Final = web.AppKey("workspace", Workspace)


def page_translator(request: web.Request, session: Session | None) -> Translator:
    """The reader's language and zone: the signed-in person's ``locale`` and ``timezone`` (a
    manager's from the registry, operations' from the settings); before sign-in the browser's
    ``Accept-Language`` (English by default) and UTC."""
    if session is not None:
        person = request.app[WORKSPACE].mailer.people.get(session.manager_id)
        if person is not None:
            try:
                return Translator(person.locale, person.timezone)
            except LocaleError:  # an operations person's setting cardmon cannot read
                return Translator(DEFAULT_LOCALE, person.timezone)
    return Translator(negotiate(request.headers.get("Accept-Language")))


def _template_gettext(translator: Translator) -> dict[str, Any]:
    """``_``/``gettext``/``ngettext`` for templates, as jinja2's newstyle gettext: the
    translation is escaped as markup, its ``%(name)s`` parameters are escaped."""
    catalogue = translations(translator.language)

    @jinja2.pass_context
    def gettext(context: jinja2.runtime.Context, message: str, **params: Any) -> str:
        text: str = catalogue.gettext(message)
        if context.eval_ctx.autoescape:
            text = Markup(text)
        return text % params if params else text

    @jinja2.pass_context
    def ngettext(context: jinja2.runtime.Context, singular: str, plural: str, num: int,
                 **params: Any) -> str:
        text: str = catalogue.ngettext(singular, plural, num)
        if context.eval_ctx.autoescape:
            text = Markup(text)
        return text % {"num": num, **params}

    return {"_": gettext, "gettext": gettext, "ngettext": ngettext}


def render(request: web.Request, template: str, context: dict[str, Any], *,
           status: int = 200, scripts: bool = False) -> web.Response:
    """Render ``template`` with ``context`` and the page headers, in the reader's language.

    ``context["session"]`` (``None`` before sign-in) picks the language
    (:func:`page_translator`); templates get ``_``, ``gettext``, ``ngettext``, ``t`` (the
    :class:`~monitor.i18n.Translator`: ``t.datetime(...)``, ``t.money(...)``,
    ``t.rule_text(...)``), ``when(moment, layout)`` (the reader's zone: the strftime
    ``layout`` in English, CLDR's way in another language;
    :func:`~monitor.alerts.messages.local.local_time`), ``lang`` and ``signed_in_as`` (the
    person's name and ID). ``scripts``: the
    page may run its own script (:data:`LIVE_PAGE_POLICY`).
    """
    session = context.get("session")
    translator = page_translator(request, session)
    person = request.app[WORKSPACE].mailer.people.get(session.manager_id) if session else None
    context = {**context, **_template_gettext(translator), "t": translator,
               "lang": translator.locale,
               "signed_in_as": (f"{person.name} ({person.person_id})" if person is not None
                                else session.manager_id if session else ""),
               "when": lambda moment, layout="%Y-%m-%d %H:%M %Z": local_time(translator, moment, layout)}
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    response.headers.update(PAGE_HEADERS)
    response.headers["Content-Language"] = translator.locale
    if scripts:
        response.headers["Content-Security-Policy"] = LIVE_PAGE_POLICY
    return response


def refused(request: web.Request, status: int, title: str, message: str,
            session: Session | None = None, **params: Any) -> web.Response:
    """A message page with ``status`` (403, 400, 409...).

    ``title`` and ``message`` are English msgids (mark them with :func:`~monitor.i18n.N_`),
    shown in the reader's language with ``%(name)s`` filled from ``params``.
    """
    translator = page_translator(request, session)
    return render(request, "message.html", {
        "title": translator.gettext(title, **params), "message": translator.gettext(message, **params),
        "session": session}, status=status)


def not_found(request: web.Request, session: Session,
              message: str = N_("There is no such alert among your clients' alerts.")) -> web.Response:
    """The 404 of anything the session may not see, the same as for what does not exist."""
    return refused(request, 404, N_("Not found"), message, session)


async def current_session(request: web.Request) -> Session | None:
    """The request's live session with its person's roles now, if they may still sign in
    (a manager still in the registry, an operations person still in the settings)."""
    workspace = request.app[WORKSPACE]
    session = await workspace.sessions.find(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return None
    person = workspace.mailer.people.get(session.manager_id)
    if person is None:
        return None
    return replace(session, roles=frozenset(person.roles), team=person.team)


def csrf_ok(request: web.Request, session: Session, form: Any) -> bool:
    """Whether ``form`` carries the session's CSRF token."""
    return request.app[WORKSPACE].sessions.check_csrf(session, form.get("csrf_token"))


def csrf_refused(request: web.Request, session: Session | None = None) -> web.Response:
    """The 403 of a form without the session's CSRF token."""
    return refused(request, 403, N_("Request refused"),
                   N_("This form has expired or did not come from this page. Reload and try again."),
                   session)


def redirect(location: str) -> web.Response:
    """A 303 to ``location`` with the page headers."""
    return web.Response(status=303, headers={**PAGE_HEADERS, "Location": location})


def to_sign_in(next_path: str | None = None) -> web.Response:
    """A 303 to the sign-in form (no session, or an expired one), which returns to
    ``next_path`` afterwards when it is a safe workspace path (:mod:`~monitor.workspace.returning`)."""
    return redirect(f"/workspace/sign-in{next_query(next_path)}")


def cross_site(request: web.Request) -> bool:
    """Whether a POST came from another site's page (its ``Origin`` is neither ours nor the public URL's)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    public = urlsplit(request.app[WORKSPACE].mailer.public_url)
    return origin not in (f"{request.scheme}://{request.host}", f"{public.scheme}://{public.netloc}")


def secure(request: web.Request) -> bool:
    """Whether the browser reached us over TLS: this request did, or the public URL is ``https``
    (a TLS-terminating proxy in front of cardmon)."""
    return request.secure or request.app[WORKSPACE].mailer.public_url.startswith("https://")


@jinja2.pass_context
def money(context: jinja2.runtime.Context, event: AlertEvent) -> str:
    """A transaction's amount as the page's reader writes it (``"€134.09"``, ``"134,09 €"``):
    integer minor units, ISO 4217 currency (a template filter: ``{{ event | money }}``)."""
    return money_of(context, event.amount_minor, event.currency)


@jinja2.pass_context
def money_of(context: jinja2.runtime.Context, amount_minor: int, currency: str) -> str:
    """An amount in ``currency``'s minor units as the page's reader writes it (English: ``"€134.09"``)."""
    translator = context.get("t")
    if isinstance(translator, Translator) and translator.language != "en":
        return translator.money(amount_minor, currency)
    return format_amount(amount_minor, currency, locale="en")
