"""Alerts through Apprise: one library for the chat tools and gateways banks use.

Apprise (https://github.com/caronc/apprise) sends a title and a body to any
service named by a URL: ``mailto://`` e-mail, ``json://`` webhooks, ``wecombot://``
(WeCom / WeChat Work), ``dingtalk://``, ``slack://``, ``workflows://`` (Microsoft
Teams workflows), ``tgram://`` (Telegram), and many SMS gateways. A manager names
their targets in the registry (:mod:`monitor.alerts.routing`); a global fallback or
an operations sink may be Apprise URLs too.

Apprise URLs carry tokens, so:

* a URL never appears in our errors, ``repr`` or logs (errors name the service, e.g.
  ``Telegram``, and the target's index);
* Apprise's own logger (``apprise``) is filtered: records below WARNING are dropped
  (they print request URLs and the whole payload) and URL-shaped text in the rest
  is replaced by ``<scheme>://<redacted>``.

The channel never retries (the delivery worker does): a URL's own ``?retry=`` is
honoured by Apprise, so leave it out of registry URLs.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Final

import apprise

from monitor.alerts.delivery.channels import DeliveryError
from monitor.alerts.messages.alert import AlertMessage
from monitor.secrets import redact_urls

__all__ = ["AppriseChannel", "is_apprise_url"]


class _RedactAppriseRecords(logging.Filter):
    """Drops Apprise's DEBUG/INFO records and strips URLs from the others."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        record.msg = redact_urls(record.getMessage())
        record.args = None
        return True


_FILTER: Final = _RedactAppriseRecords()


_prepared = False  # set once Apprise's plugins are loaded and its logger filtered


def _prepare_apprise() -> None:
    """Filter Apprise's logger and load its plugins, once per process."""
    global _prepared
    if _prepared:
        return
    logger = logging.getLogger(apprise.LOGGER_NAME)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    # Apprise's e-mail plugin imports the stdlib ``imghdr`` (deprecated since 3.11) for
    # PGPy; load the plugins now, with that one warning silenced, instead of at the
    # first send.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'imghdr' is deprecated",
                                category=DeprecationWarning)
        apprise.Apprise().add("json://localhost")
    _prepared = True


def is_apprise_url(url: str) -> bool:
    """Whether Apprise knows the URL's service and can parse it (no network use)."""
    _prepare_apprise()
    return bool(apprise.Apprise().add(url))


class AppriseChannel:
    """Sends a rendered alert (subject as title, text as body) to Apprise URLs.

    Args:
        urls: the targets; every one must accept the message. Empty is allowed for
            the template the worker binds per manager with :meth:`to`.
        timeout: seconds for the whole notification (Apprise's ``timeout``).

    Raises:
        ValueError: a URL is not one Apprise knows (the message gives its index only).
    """

    def __init__(self, urls: Sequence[str] = (), *, timeout: float = 10.0) -> None:
        _prepare_apprise()
        self._urls = tuple(urls)
        for index, url in enumerate(self._urls):
            if not is_apprise_url(url):
                raise ValueError(f"Apprise URL #{index} is not a URL Apprise can send to")
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"AppriseChannel(urls=<{len(self._urls)} hidden>, timeout={self._timeout})"

    def to(self, url: str) -> AppriseChannel:
        """A channel with the same settings that sends to ``url`` only.

        Raises:
            ValueError: Apprise does not know the URL.
        """
        return AppriseChannel((url,), timeout=self._timeout)

    async def send_text(self, title: str, text: str) -> None:
        """Notify every URL with ``title`` and plain ``text`` (a message that is not an alert).

        Raises:
            DeliveryError: no URL, or a target did not accept it (never a URL in the error).
        """
        if not self._urls:
            raise DeliveryError("no Apprise URL to send to")
        notifier = apprise.Apprise()
        for url in self._urls:
            notifier.add(url)
        result = await notifier.async_notify(body=text, title=title, body_format=apprise.NotifyFormat.TEXT,
                                             notify_type=apprise.NotifyType.INFO, timeout=self._timeout)
        if not result:
            raise DeliveryError(f"Apprise {result.status.name.lower()}, {result.failed_count} of "
                                f"{len(self._urls)} target(s) failed")

    async def send(self, message: AlertMessage) -> None:
        """Notify every URL with ``message.subject`` and ``message.text`` (plain text).

        Raises:
            DeliveryError: no URL, or a target did not accept it (the error names the
                service kinds that failed, never a URL).
        """
        if not self._urls:
            raise DeliveryError(f"alert {message.alert_id}: no Apprise URL to send to")
        notifier = apprise.Apprise()
        for url in self._urls:
            notifier.add(url)
        result = await notifier.async_notify(
            body=message.text,
            title=message.subject,
            body_format=apprise.NotifyFormat.TEXT,
            notify_type=apprise.NotifyType.FAILURE,
            timeout=self._timeout,
        )
        if not result:
            failed = sorted({r.name for r in result.results
                             if r.status != apprise.AppriseResultStatus.SUCCESS})
            raise DeliveryError(
                f"alert {message.alert_id}: Apprise {result.status.name.lower()}, "
                f"{result.failed_count} of {len(self._urls)} target(s) failed"
                + (f" ({', '.join(failed)})" if failed else "")
            )
