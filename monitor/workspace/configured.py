"""The workspace the settings enable: built once at start from ``workspace``, ``api`` and ``alerting.smtp``.

Roles are checked against the registry as it is at start: an operations ID that is a
manager ID refuses to start (:class:`~monitor.errors.ConfigurationError`); a team lead
or team manager the registry does not hold is a warning in the log (a registry reload
may bring them; until then they cannot sign in, or their alerts are nobody's team's).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from monitor.alerts.delivery.apprise import AppriseChannel
from monitor.alerts.delivery.configured import email_channel
from monitor.alerts.store import AlertStore
from monitor.config import Settings
from monitor.domain import Manager
from monitor.errors import ConfigurationError
from monitor.workspace.mailer import SignInMailer
from monitor.workspace.roles import RoleBook
from monitor.workspace.sessions import Sessions
from monitor.workspace.tokens import SignInTokens
from monitor.workspace.web import Workspace

__all__ = ["configured_workspace"]

log = logging.getLogger("monitor.workspace")


def configured_workspace(settings: Settings, store: AlertStore, *,
                         managers: Callable[[], Mapping[str, Manager]]) -> Workspace | None:
    """The workspace of ``settings``, or ``None`` when ``workspace.enabled`` is false.

    Links point at ``api.public_url`` (else ``http://{api.host}:{api.port}``); mail goes
    through ``alerting.smtp`` (no relay: no link is mailed, and the log says so); a person
    without an e-mail address gets theirs at their first chat target (Apprise).

    Args:
        settings: the monitor's settings (``workspace.enabled`` implies a secret).
        store: the alert store (schema 6 or later).
        managers: returns the registry's managers by ID as they are now.

    Raises:
        ConfigurationError: an operations ID of ``workspace.operations`` is a manager ID
            of the registry.
    """
    section = settings.workspace
    if not section.enabled or section.secret is None:
        return None
    secret = section.secret.get_secret_value()
    api = settings.api
    tokens = SignInTokens(secret, max_age_seconds=section.sign_in_max_age_seconds)
    email = email_channel(settings.alerting) if settings.alerting.smtp.host else None
    mailer = SignInMailer(tokens, api.public_url or f"http://{api.host}:{api.port}",
                          managers=managers, email=email, roles=RoleBook.from_settings(section),
                          chat=AppriseChannel(timeout=settings.alerting.apprise_timeout_seconds))
    errors, warnings = mailer.people.problems()
    for warning in warnings:
        log.warning("%s", warning)
    if errors:
        raise ConfigurationError("; ".join(errors))
    return Workspace(
        store=store, tokens=tokens,
        sessions=Sessions(store, secret, max_age_seconds=section.session_max_age_seconds),
        mailer=mailer,
    )
