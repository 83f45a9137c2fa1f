"""Delivery channels: where a rendered alert goes.

A channel is anything with ``async send(message) -> None`` that raises when the
message was not accepted; the delivery worker owns retries, so channels never
retry themselves.

* :class:`EmailChannel` — SMTP through the bank's relay (``aiosmtplib``), to the
  manager's e-mail address; the ``Message-ID`` derives from the alert, so a resend
  after a crash is recognisable as the same mail.
* :class:`WebhookChannel` — JSON ``POST`` (``httpx``) to the manager's webhook, with
  an ``Idempotency-Key`` header that is the same on every retry.
* :class:`JsonLinesChannel` — one JSON object per line appended to a file.
* :class:`ConsoleChannel` — a readable block on stdout (``rich``).
"""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

import aiosmtplib
import httpx
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from monitor.alerts.render import AlertMessage

__all__ = [
    "Channel",
    "ConsoleChannel",
    "DeliveryError",
    "EmailChannel",
    "JsonLinesChannel",
    "WebhookChannel",
]


class DeliveryError(Exception):
    """A channel could not deliver a message (the text never holds secrets or a PAN)."""


@runtime_checkable
class Channel(Protocol):
    """Sends one rendered alert; raises when it was not accepted."""

    async def send(self, message: AlertMessage) -> None:
        """Deliver ``message`` or raise."""
        ...


class EmailChannel:
    """E-mail to the manager over SMTP.

    Args:
        host: SMTP relay host.
        port: SMTP port (25, 587 with STARTTLS, 465 with implicit TLS).
        sender: the ``From`` address.
        username: SMTP AUTH user, ``None`` for no authentication.
        password: SMTP AUTH password (a plain ``str``; keep it in ``SecretStr`` until here).
        start_tls: upgrade the connection with STARTTLS (RFC 3207).
        use_tls: connect with implicit TLS (RFC 8314).
        timeout: seconds for connecting and each SMTP command.
    """

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        start_tls: bool = False,
        use_tls: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._username = username
        self._password = password
        self._start_tls = start_tls
        self._use_tls = use_tls
        self._timeout = timeout

    def __repr__(self) -> str:
        return (
            f"EmailChannel(host={self._host!r}, port={self._port}, sender={self._sender!r}, "
            f"start_tls={self._start_tls}, use_tls={self._use_tls})"
        )

    def build(self, message: AlertMessage) -> EmailMessage:
        """Return the e-mail for ``message`` (plain text).

        Raises:
            DeliveryError: the manager has no e-mail address.
        """
        if not message.email:
            raise DeliveryError(f"alert {message.alert_id}: the manager has no e-mail address")
        mail = EmailMessage()
        mail["From"] = self._sender
        mail["To"] = message.email
        mail["Subject"] = message.subject
        mail["Date"] = format_datetime(datetime.now(UTC))
        domain = self._sender.rpartition("@")[2] or "cardmon.invalid"
        mail["Message-ID"] = f"<{message.alert_id}.email@{domain}>"
        mail["X-Cardmon-Alert-Id"] = message.alert_id
        mail.set_content(message.text)
        return mail

    async def send(self, message: AlertMessage) -> None:
        """Send the e-mail to the manager.

        Raises:
            DeliveryError: no address.
            aiosmtplib.SMTPException: the relay refused or the connection failed.
        """
        await aiosmtplib.send(
            self.build(message),
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            start_tls=self._start_tls,
            use_tls=self._use_tls,
            timeout=self._timeout,
        )


class WebhookChannel:
    """JSON ``POST`` of the alert payload to the manager's webhook.

    Args:
        client: a shared ``httpx.AsyncClient``; ``None`` makes one per send.
        timeout: seconds for the whole request.
    """

    def __init__(self, client: httpx.AsyncClient | None = None, *, timeout: float = 10.0) -> None:
        self._client = client
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"WebhookChannel(timeout={self._timeout})"

    async def send(self, message: AlertMessage) -> None:
        """POST ``message.payload``; any non-2xx answer raises.

        Raises:
            DeliveryError: no webhook, or the receiver answered non-2xx (the error
                names the host only: webhook URLs often carry a token).
            httpx.HTTPError: the connection failed or timed out.
        """
        if not message.webhook_url:
            raise DeliveryError(f"alert {message.alert_id}: the manager has no webhook")
        headers = {"Idempotency-Key": message.idempotency_key or message.alert_id}
        if self._client is None:
            async with httpx.AsyncClient() as client:
                response = await self._post(client, message, headers)
        else:
            response = await self._post(self._client, message, headers)
        if not response.is_success:
            host = urlsplit(message.webhook_url).netloc
            raise DeliveryError(f"webhook at {host} answered HTTP {response.status_code}")

    async def _post(
        self, client: httpx.AsyncClient, message: AlertMessage, headers: dict[str, str]
    ) -> httpx.Response:
        assert message.webhook_url is not None
        return await client.post(
            message.webhook_url, json=message.payload, headers=headers, timeout=self._timeout
        )


class JsonLinesChannel:
    """Appends each alert payload as one JSON line to ``path`` (parents created)."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()  # one writer at a time, so lines never interleave

    def __repr__(self) -> str:
        return f"JsonLinesChannel(path={str(self._path)!r})"

    def _append(self, line: str) -> None:
        with self._lock:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._path.open("a", encoding="utf-8") as file:
                file.write(line)
                file.flush()

    async def send(self, message: AlertMessage) -> None:
        """Append ``message.payload`` as one line.

        Raises:
            OSError: the file could not be written.
        """
        line = json.dumps(message.payload, ensure_ascii=False, separators=(",", ":")) + "\n"
        await asyncio.to_thread(self._append, line)


class ConsoleChannel:
    """Prints each alert as a framed block (``rich``) on stdout or ``console``."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console

    def __repr__(self) -> str:
        return "ConsoleChannel()"

    async def send(self, message: AlertMessage) -> None:
        """Print the subject as the title and the text as the body."""
        console = self._console or Console()
        console.print(Panel(Text(message.text.rstrip()), title=Text(message.subject), expand=False))
