"""Sending a sign-in link through the manager's own channel from the registry.

:class:`SignInMailer` finds a manager by ID or e-mail address in the registry as it is
now, issues a token and mails ``{public_url}/workspace/sign-in/{token}`` to the
address the *registry* holds (never to one typed in the form). E-mail goes through the
SMTP relay of ``alerting.smtp`` (:class:`~monitor.alerts.delivery.channels.EmailChannel`).

Guarantees and limits: the form's answer never says whether a manager exists or the
mail left (the caller answers one page and sends in the background, so the time
taken says nothing either). One attempt per request: a relay that is down is logged
(a warning with the manager ID, never the link) and the manager asks again. Managers
without an e-mail address cannot sign in yet (chat channels come later). The mail is in
the manager's language (their registry ``locale``, :mod:`monitor.i18n`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Final
from urllib.parse import quote

import aiosmtplib

from monitor.alerts.delivery.channels import EmailChannel
from monitor.domain import Manager
from monitor.i18n import DEFAULT_LOCALE, LocaleError, Translator
from monitor.workspace.tokens import SignInTokens

__all__ = ["SignInMailer"]

log = logging.getLogger("monitor.workspace")

#: The longest manager ID or address the form accepts (characters).
MAX_WHO_CHARS: Final = 320


class SignInMailer:
    """Finds a manager and mails them a sign-in link.

    Args:
        tokens: issues the signed tokens.
        public_url: the base URL managers reach cardmon at (``https://cardmon.bank.example``).
        managers: returns the registry's managers by ID as they are now.
        email: the SMTP channel; ``None`` when no relay is configured (nothing is sent).
    """

    def __init__(self, tokens: SignInTokens, public_url: str, *,
                 managers: Callable[[], Mapping[str, Manager]], email: EmailChannel | None) -> None:
        if not public_url:
            raise ValueError("public_url is required to build sign-in links")
        self._tokens = tokens
        self._public_url = public_url.rstrip("/")
        self._managers = managers
        self._email = email

    def __repr__(self) -> str:
        return f"SignInMailer(public_url={self._public_url!r}, email={self._email is not None})"

    @property
    def public_url(self) -> str:
        """The base URL managers reach cardmon at (no trailing ``/``)."""
        return self._public_url

    def known(self, manager_id: str) -> bool:
        """Whether the registry, as it is now, has a manager with this exact ID."""
        return manager_id in self._managers()

    def find(self, who: str) -> Manager | None:
        """The manager whose ID is ``who``, or whose e-mail address is ``who`` (any case); else ``None``."""
        who = who.strip()
        if not who or len(who) > MAX_WHO_CHARS:
            return None
        managers = self._managers()
        found = managers.get(who)
        if found is not None:
            return found
        wanted = who.casefold()
        return next((m for m in managers.values() if m.email and m.email.casefold() == wanted), None)

    def url(self, manager_id: str) -> str:
        """A new sign-in URL for ``manager_id``."""
        return f"{self._public_url}/workspace/sign-in/{quote(self._tokens.issue(manager_id), safe='')}"

    async def send(self, who: str) -> bool:
        """Mail a sign-in link to the manager ``who`` names; ``True`` when the relay accepted it.

        Never raises for an unknown manager, a manager without an address or a relay
        failure (each is logged without the link): the caller's answer is the same.
        """
        manager = self.find(who)
        if manager is None:
            log.info("workspace sign-in asked for an unknown manager")
            return False
        if self._email is None or not manager.email:
            log.warning("workspace sign-in for manager %s: no e-mail %s", manager.manager_id,
                        "relay is configured" if self._email is None else "address in the registry")
            return False
        minutes = max(1, self._tokens.max_age_seconds // 60)
        try:
            t = Translator(manager.locale)
        except LocaleError:
            t = Translator(DEFAULT_LOCALE)
        text = (t.gettext("Hello %(name)s,", name=manager.name) + "\n\n"
                + t.gettext("Open this link to sign in to the cardmon workspace:")
                + f"\n\n{self.url(manager.manager_id)}\n\n"
                + t.ngettext("It works once, within %(num)s minute. If you did not ask for it, "
                             "ignore this mail.",
                             "It works once, within %(num)s minutes. If you did not ask for it, "
                             "ignore this mail.", minutes) + "\n")
        try:
            await self._email.send_text(manager.email, t.gettext("Your cardmon sign-in link"), text)
        except (aiosmtplib.SMTPException, OSError) as error:
            log.warning("workspace sign-in for manager %s: the mail relay failed (%s); "
                        "the manager can ask again", manager.manager_id, type(error).__name__)
            return False
        return True
