"""A real SMTP sink (aiosmtpd) on 127.0.0.1: keeps what it accepts; stop it for an outage.

:class:`SmtpSink` accepts every message and keeps it with its envelope recipients, so a
test can read what a manager was sent (:meth:`SmtpSink.deliveries`) or prove that every
message arrived exactly once across an outage (:meth:`SmtpSink.message_ids`). While it
is stopped nothing listens on its port: a connection is refused, as when a bank's mail
relay is down; :meth:`SmtpSink.start` listens again on the same port.

Needs ``aiosmtpd``, which is in cardmon's test extras: ``pip install 'cardmon[test]'``.
"""

from __future__ import annotations

import email
import email.policy
import threading
from collections import Counter
from email.message import EmailMessage
from typing import Any, Self, cast

from aiosmtpd.controller import Controller

from monitor.testing.broker import free_port

__all__ = ["SmtpSink"]


class _Collector:
    """aiosmtpd handler keeping every accepted message."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []  # (recipients, message)
        self.lock = threading.Lock()  # the server runs in its own thread

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = cast(EmailMessage, email.message_from_bytes(envelope.content, policy=email.policy.default))
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


class SmtpSink:
    """An SMTP server on 127.0.0.1 with a fixed port, for :meth:`stop` / :meth:`start` outages.

    Use as a context manager (``with SmtpSink() as sink:``) or call :meth:`start` and
    :meth:`stop`. Point ``alerting.smtp`` at ``sink.host`` and ``sink.port``.

    Args:
        port: the port; ``None`` picks a free one (kept across restarts).
    """

    def __init__(self, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._collector = _Collector()  # shared by every run of the server
        self._controller: Controller | None = None

    def start(self) -> Self:
        """Listen on the port (again); raises if it is taken."""
        if self._controller is None:
            self._controller = Controller(self._collector, hostname=self.host, port=self.port)
            self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening: connections to the port are refused until :meth:`start`."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def running(self) -> bool:
        """Whether the sink is listening."""
        return self._controller is not None

    def messages(self) -> list[tuple[list[str], EmailMessage]]:
        """``(recipients, message)`` of every accepted message, in order."""
        with self._collector.lock:
            return list(self._collector.messages)

    def deliveries(self) -> list[tuple[str, str, str]]:
        """``(recipient, subject, plain-text body)``, one per recipient of each message, in order."""
        found: list[tuple[str, str, str]] = []
        for recipients, message in self.messages():
            body = message.get_body(preferencelist=("plain",))
            text = body.get_content() if body is not None else ""
            found += [(to, str(message["Subject"]), text) for to in recipients]
        return found

    def message_ids(self) -> Counter[str]:
        """How often each ``Message-ID`` was accepted."""
        return Counter(str(message["Message-ID"]) for _, message in self.messages())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
