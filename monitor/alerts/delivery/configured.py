"""The delivery channels the settings enable: built once at start, by name.

The worker (:mod:`monitor.alerts.delivery.worker`) sends each outbox row through the
channel its row names; this module turns :class:`~monitor.config.Settings` into those
channels, and into the operations channel told about a delivery that keeps failing.
"""

from __future__ import annotations

from typing import Any

from monitor.alerts.delivery.alertmanager import AlertmanagerChannel
from monitor.alerts.delivery.apprise import AppriseChannel
from monitor.alerts.delivery.channels import (
    Channel,
    ConsoleChannel,
    EmailChannel,
    JsonLinesChannel,
    WebhookChannel,
)
from monitor.config import AlertingSettings, Settings

__all__ = ["build_channels", "build_fallback", "email_channel"]


def email_channel(alerting: AlertingSettings, recipient: str | None = None) -> EmailChannel:
    """The SMTP channel of ``alerting.smtp`` (which must have a host), to ``recipient`` or each manager."""
    smtp = alerting.smtp
    assert smtp.host is not None
    return EmailChannel(
        host=smtp.host, port=smtp.port, username=smtp.username,
        password=smtp.password.get_secret_value() if smtp.password else None,
        sender=smtp.from_address, start_tls=smtp.starttls, use_tls=smtp.use_tls,
        timeout=smtp.timeout_seconds, recipient=recipient,
    )


def build_channels(settings: Settings) -> dict[str, Any]:
    """The delivery channels the settings enable, by name.

    ``email`` needs ``alerting.smtp.host``; ``webhook`` (each manager's own URL, signed
    when ``alerting.webhook_signing_secret`` is set) and ``apprise`` (each manager's chat
    or SMS URLs from the registry) are always available; ``console``, ``jsonl`` and
    ``alertmanager`` are sinks every alert goes to when listed in ``alerting.sinks``.
    """
    alerting = settings.alerting
    secret = alerting.webhook_signing_secret
    channels: dict[str, Any] = {
        "webhook": WebhookChannel(timeout=alerting.webhook_timeout_seconds,
                                  signing_secret=secret.get_secret_value() if secret else None),
        "apprise": AppriseChannel(timeout=alerting.apprise_timeout_seconds),
    }
    if alerting.smtp.host:
        channels["email"] = email_channel(alerting)
    if "console" in alerting.sinks:
        channels["console"] = ConsoleChannel()
    if "jsonl" in alerting.sinks:
        channels["jsonl"] = JsonLinesChannel(alerting.jsonl_path)
    if "alertmanager" in alerting.sinks and alerting.alertmanager_url:
        channels["alertmanager"] = AlertmanagerChannel(
            alerting.alertmanager_url, timeout=alerting.webhook_timeout_seconds,
            generator_url=alerting.alertmanager_generator_url,
            hold_seconds=alerting.alertmanager_hold_seconds)
    return channels


def build_fallback(alerting: AlertingSettings) -> Channel | None:
    """The operations channel told about a delivery that keeps failing, or ``None``.

    The backup manager (``backup_manager`` in ``alerting.fallback``) is no channel: the
    delivery worker enqueues the alert to them (``DeliveryWorker(backup_to_registry=...)``).
    """
    match alerting.operations_fallback():
        case "email":
            return email_channel(alerting, recipient=alerting.fallback_email)
        case "apprise":
            assert alerting.fallback_apprise_url is not None
            return AppriseChannel([alerting.fallback_apprise_url.get_secret_value()],
                                  timeout=alerting.apprise_timeout_seconds)
        case "jsonl":
            return JsonLinesChannel(alerting.fallback_jsonl_path)
        case "console":
            return ConsoleChannel()
    return None
