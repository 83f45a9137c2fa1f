"""A real SMTP relay (aiosmtpd) that the outage tests stop and start again on the same port.

:class:`SmtpRelay` counts what it accepts by ``Message-ID``, so a test can prove that
every message arrived exactly once across an outage. While it is stopped nothing
listens on its port: a connection is refused, as when a bank's mail relay is down.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections import Counter
from email.message import EmailMessage
from typing import Any, Self, cast

from aiosmtpd.controller import Controller

__all__ = ["SmtpRelay"]


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


class SmtpRelay:
    """An SMTP relay on 127.0.0.1 with a fixed port, for :meth:`stop` / :meth:`start` outages.

    Args:
        port: the port; ``None`` picks a free one (kept across restarts).
    """

    def __init__(self, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or _free_port()
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
        """Whether the relay is listening."""
        return self._controller is not None

    def messages(self) -> list[tuple[list[str], EmailMessage]]:
        """``(recipients, message)`` of every accepted message, in order."""
        with self._collector.lock:
            return list(self._collector.messages)

    def message_ids(self) -> Counter[str]:
        """How often each ``Message-ID`` was accepted."""
        return Counter(str(message["Message-ID"]) for _, message in self.messages())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return cast(int, sock.getsockname()[1])
