"""Sending a sign-in link through the person's own channel from the registry.

:class:`SignInMailer` finds a person by ID or e-mail address (a manager in the registry
as it is now, or an operations person of ``workspace.operations``: :class:`~monitor.workspace.roles.People`),
issues a token and mails ``{public_url}/workspace/sign-in/{token}`` to the
address the *registry* (or the settings) hold (never to one typed in the form). E-mail goes through the
SMTP relay of ``alerting.smtp`` (:class:`~monitor.alerts.delivery.channels.EmailChannel`).

Guarantees and limits: the form's answer never says whether a manager exists or the
mail left (the caller answers one page and sends in the background, so the time
taken says nothing either). One attempt per request: a relay that is down is logged
(a warning with the manager ID, never the link) and the manager asks again. A manager
without an e-mail address (or with no relay configured) gets the link at the first chat
target the registry gives them (their ``apprise:0``: a Slack, Teams, WeCom... message
through :class:`~monitor.alerts.delivery.apprise.AppriseChannel`); a generic webhook is
never used, it is an integration endpoint, not a person. The message is in the manager's
language (their registry ``locale``, :mod:`monitor.i18n`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from urllib.parse import quote

import aiosmtplib

from monitor.alerts.delivery.apprise import AppriseChannel
from monitor.alerts.delivery.channels import DeliveryError, EmailChannel
from monitor.domain import Manager
from monitor.i18n import DEFAULT_LOCALE, LocaleError, Translator
from monitor.workspace.returning import next_query
from monitor.workspace.roles import MAX_WHO_CHARS, People, Person, RoleBook
from monitor.workspace.tokens import SignInTokens

__all__ = ["MAX_WHO_CHARS", "SignInMailer"]

log = logging.getLogger("monitor.workspace")


class SignInMailer:
    """Finds a person and mails them a sign-in link.

    Args:
        tokens: issues the signed tokens.
        public_url: the base URL managers reach cardmon at (``https://cardmon.bank.example``).
        managers: returns the registry's managers by ID as they are now.
        email: the SMTP channel; ``None`` when no relay is configured (nothing is mailed).
        roles: team leads and operations staff of the settings; ``None``: managers only.
        chat: the Apprise channel that reaches a person without an e-mail address at the
            first chat target the registry gives them; ``None``: e-mail only.

    Attributes:
        people: who may sign in, with their roles.
    """

    def __init__(self, tokens: SignInTokens, public_url: str, *,
                 managers: Callable[[], Mapping[str, Manager]], email: EmailChannel | None,
                 roles: RoleBook | None = None, chat: AppriseChannel | None = None) -> None:
        if not public_url:
            raise ValueError("public_url is required to build sign-in links")
        self._tokens = tokens
        self._public_url = public_url.rstrip("/")
        self.people = People(managers, roles)
        self._email = email
        self._chat = chat

    def __repr__(self) -> str:
        return (f"SignInMailer(public_url={self._public_url!r}, email={self._email is not None}, "
                f"chat={self._chat is not None})")

    @property
    def public_url(self) -> str:
        """The base URL managers reach cardmon at (no trailing ``/``)."""
        return self._public_url

    def known(self, person_id: str) -> bool:
        """Whether someone may sign in with this exact ID now (a manager of the registry, or operations)."""
        return self.people.get(person_id) is not None

    def find(self, who: str) -> Person | None:
        """The person whose ID is ``who``, or whose e-mail address is ``who`` (any case); else ``None``."""
        return self.people.find(who)

    def url(self, manager_id: str, next_path: str | None = None) -> str:
        """A new sign-in URL for ``manager_id``; after signing in it goes to ``next_path``
        when that is a safe workspace path (:func:`~monitor.workspace.returning.safe_next`)."""
        token = quote(self._tokens.issue(manager_id), safe='')
        return f"{self._public_url}/workspace/sign-in/{token}{next_query(next_path)}"

    async def send(self, who: str, next_path: str | None = None) -> bool:
        """Mail a sign-in link to the manager ``who`` names; ``True`` when the relay accepted it.

        The link returns to ``next_path`` after signing in when it is a safe workspace path.

        Never raises for an unknown manager, a manager without an address or a relay
        failure (each is logged without the link): the caller's answer is the same.
        """
        manager = self.find(who)
        if manager is None:
            log.info("workspace sign-in asked for an unknown manager")
            return False
        by_mail = self._email is not None and bool(manager.email)
        by_chat = not by_mail and self._chat is not None and bool(manager.chat_urls)
        if not by_mail and not by_chat:
            log.warning("workspace sign-in for %s: no e-mail %s and no chat channel in the registry",
                        manager.person_id,
                        "relay is configured" if self._email is None else "address in the registry")
            return False
        minutes = max(1, self._tokens.max_age_seconds // 60)
        try:
            t = Translator(manager.locale)
        except LocaleError:
            t = Translator(DEFAULT_LOCALE)
        text = (t.gettext("Hello %(name)s,", name=manager.name) + "\n\n"
                + t.gettext("Open this link to sign in to the cardmon workspace:")
                + f"\n\n{self.url(manager.person_id, next_path)}\n\n"
                + t.ngettext("It works once, within %(num)s minute. If you did not ask for it, "
                             "ignore this mail.",
                             "It works once, within %(num)s minutes. If you did not ask for it, "
                             "ignore this mail.", minutes) + "\n")
        subject = t.gettext("Your cardmon sign-in link")
        try:
            if by_mail:
                assert self._email is not None and manager.email
                await self._email.send_text(manager.email, subject, text)
            else:
                assert self._chat is not None
                # The registry's first chat target of the person (their ``apprise:0``).
                await self._chat.to(manager.chat_urls[0]).send_text(subject, text)
        except (aiosmtplib.SMTPException, OSError, DeliveryError, ValueError) as error:
            log.warning("workspace sign-in for %s: the %s failed (%s); they can ask again",
                        manager.person_id, "mail relay" if by_mail else "chat channel",
                        type(error).__name__)
            return False
        return True
