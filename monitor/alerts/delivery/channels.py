"""Delivery channels: where a rendered alert goes.

A channel is anything with ``async send(message) -> None`` that raises when the
message was not accepted; the delivery worker owns retries, so channels never
retry themselves.

* :class:`EmailChannel` — SMTP through the bank's relay (``aiosmtplib``), to the
  manager's e-mail address (or one fixed address, e.g. the operations mailbox as
  the fallback); the ``Message-ID`` derives from the alert, so a resend after a
  crash is recognisable as the same mail.
* :class:`WebhookChannel` — JSON ``POST`` (``httpx``) to the manager's webhook, with
  an ``Idempotency-Key`` header that is the same on every retry and, with a shared
  secret, an HMAC-SHA256 signature of the exact body (:func:`sign_webhook`,
  :func:`verify_webhook_signature`).
* :class:`JsonLinesChannel` — one JSON object per line appended to a file.
* :class:`ConsoleChannel` — a readable block on stdout (``rich``).

Chat tools and SMS gateways go through :class:`monitor.alerts.delivery.apprise.AppriseChannel`;
docs/alert-channels.md says which path each channel takes and why.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import threading
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Final, Protocol, TextIO, runtime_checkable

import aiosmtplib
import httpx
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from monitor.alerts.messages.alert import AlertMessage
from monitor.errors import CardmonError
from monitor.secrets import scrub_url, url_host

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Channel",
    "ConsoleChannel",
    "DeliveryError",
    "EmailChannel",
    "JsonLinesChannel",
    "WebhookChannel",
    "open_private",
    "sign_webhook",
    "verify_webhook_signature",
]

#: ``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` (see :func:`sign_webhook`).
SIGNATURE_HEADER: Final = "X-Cardmon-Signature"
#: Unix time in whole seconds when the request was signed; part of the signed bytes.
TIMESTAMP_HEADER: Final = "X-Cardmon-Timestamp"
#: A receiver refuses signatures older (or newer) than this, in seconds: replays of a
#: captured request stop working after five minutes (as Stripe and Slack do).
DEFAULT_SIGNATURE_TOLERANCE_SECONDS: Final = 300
# Owner read/write only: alert files hold client names and card references.
_PRIVATE: Final = 0o600


class DeliveryError(CardmonError):
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
        recipient: send every alert to this address instead of the manager's (the
            operations mailbox as a fallback channel); ``None`` = the manager's.
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
        recipient: str | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._username = username
        self._password = password
        self._start_tls = start_tls
        self._use_tls = use_tls
        self._timeout = timeout
        self._recipient = recipient

    def __repr__(self) -> str:
        return (
            f"EmailChannel(host={self._host!r}, port={self._port}, sender={self._sender!r}, "
            f"start_tls={self._start_tls}, use_tls={self._use_tls}, recipient={self._recipient!r})"
        )

    def build(self, message: AlertMessage) -> EmailMessage:
        """Return the e-mail for ``message`` (plain text).

        Raises:
            DeliveryError: the manager has no e-mail address.
        """
        to = self._recipient or message.email
        if not to:
            raise DeliveryError(f"alert {message.alert_id}: the manager has no e-mail address")
        mail = EmailMessage()
        mail["From"] = self._sender
        mail["To"] = to
        # No-break spaces (French money and punctuation, Babel) as plain ones: CPython's header
        # folder drops the space before an encoded word that starts after one.
        mail["Subject"] = message.subject.replace("\u00a0", " ").replace("\u202f", " ")
        mail["Date"] = format_datetime(datetime.now(UTC))
        domain = self._sender.rpartition("@")[2] or "cardmon.invalid"
        # "<alert_id>.<channel>": the same on every retry of one delivery, distinct per channel.
        local = (message.idempotency_key or f"{message.alert_id}:email").replace(":", ".")
        mail["Message-ID"] = f"<{local}@{domain}>"
        mail["X-Cardmon-Alert-Id"] = message.alert_id
        mail.set_content(message.text)
        return mail

    async def send(self, message: AlertMessage) -> None:
        """Send the e-mail to the manager.

        Raises:
            DeliveryError: no address.
            aiosmtplib.SMTPException: the relay refused or the connection failed.
        """
        await self._submit(self.build(message))

    async def send_text(self, to: str, subject: str, text: str) -> None:
        """Send a plain-text mail that is not an alert (a workspace sign-in link) to ``to``.

        Raises:
            aiosmtplib.SMTPException: the relay refused or the connection failed.
        """
        mail = EmailMessage()
        mail["From"] = self._sender
        mail["To"] = to
        mail["Subject"] = subject
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail.set_content(text)
        await self._submit(mail)

    async def _submit(self, mail: EmailMessage) -> None:
        await aiosmtplib.send(
            mail,
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            start_tls=self._start_tls,
            use_tls=self._use_tls,
            timeout=self._timeout,
        )


def sign_webhook(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """Return the ``X-Cardmon-Signature`` value of one webhook request.

    The signed bytes are ``b"<timestamp>." + body``: the decimal Unix time of
    ``X-Cardmon-Timestamp``, a full stop, then the exact request body. Signing the
    time with the body means a captured request cannot be replayed later with a new
    timestamp.

    Args:
        secret: the shared secret (``str`` is UTF-8 encoded).
        timestamp: Unix time in whole seconds.
        body: the exact body bytes sent.

    Returns:
        ``"sha256=" + hex(HMAC-SHA256(secret, signed bytes))`` (RFC 2104, FIPS 180-4).
    """
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_webhook_signature(
    secret: str | bytes,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    tolerance_seconds: float = DEFAULT_SIGNATURE_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Check a received webhook the way a receiver should (constant-time compare).

    Args:
        secret: the shared secret.
        body: the raw request body, as received (before any JSON parsing).
        timestamp: the ``X-Cardmon-Timestamp`` header.
        signature: the ``X-Cardmon-Signature`` header.
        tolerance_seconds: the largest accepted distance between ``timestamp`` and
            ``now``, in seconds.
        now: Unix time in seconds; ``None`` = the current time.

    Returns:
        ``True`` only if both headers are present, the timestamp is recent and the
        signature matches the body.
    """
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign_webhook(secret, int(timestamp), body), signature)


class WebhookChannel:
    """JSON ``POST`` of the alert payload to the manager's webhook.

    Every request carries ``Idempotency-Key: <alert_id>:<channel>`` (the same on each
    retry); with ``signing_secret`` it also carries ``X-Cardmon-Timestamp`` and
    ``X-Cardmon-Signature`` (:func:`sign_webhook`), computed per attempt over the
    exact body bytes sent.

    Args:
        client: a shared ``httpx.AsyncClient``; ``None`` makes one per send.
        timeout: seconds for the whole request.
        signing_secret: the HMAC key shared with receivers (a plain ``str``: keep it
            in ``SecretStr`` until here); ``None`` sends unsigned requests.
        url: send every alert to this URL instead of the manager's webhook (an
            operations endpoint as a fallback); ``None`` = the manager's.
    """

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        timeout: float = 10.0,
        signing_secret: str | None = None,
        url: str | None = None,
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._secret = signing_secret.encode() if signing_secret else None
        self._url = url

    def __repr__(self) -> str:
        return f"WebhookChannel(timeout={self._timeout}, signed={self._secret is not None})"

    def body(self, message: AlertMessage) -> bytes:
        """The exact body bytes sent for ``message`` (compact UTF-8 JSON of its payload)."""
        return json.dumps(message.payload, ensure_ascii=False, separators=(",", ":")).encode()

    def headers(self, message: AlertMessage, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        """The request headers for ``body``; ``timestamp`` defaults to now (Unix seconds)."""
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message.idempotency_key or message.alert_id,
        }
        if self._secret is not None:
            stamp = int(time.time()) if timestamp is None else timestamp
            headers[TIMESTAMP_HEADER] = str(stamp)
            headers[SIGNATURE_HEADER] = sign_webhook(self._secret, stamp, body)
        return headers

    async def send(self, message: AlertMessage) -> None:
        """POST ``message.payload``; any non-2xx answer raises.

        Raises:
            DeliveryError: no webhook, the receiver answered non-2xx, or the request
                failed (connection, timeout: the error names the httpx error class).
                The text names the host only, never the URL: webhook URLs carry
                ``user:pass@``, tokens in the path or the query.
        """
        url = self._url or message.webhook_url
        if not url:
            raise DeliveryError(f"alert {message.alert_id}: the manager has no webhook")
        body = self.body(message)
        headers = self.headers(message, body)
        try:
            if self._client is None:
                async with httpx.AsyncClient() as client:
                    response = await client.post(url, content=body, headers=headers,
                                                 timeout=self._timeout)
            else:
                response = await self._client.post(url, content=body, headers=headers,
                                                   timeout=self._timeout)
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            raise DeliveryError(_failed(f"webhook at {url_host(url)}", error, url)) from None
        if not response.is_success:
            raise DeliveryError(f"webhook at {url_host(url)} answered HTTP {response.status_code}")


def _failed(target: str, error: Exception, url: str) -> str:
    """``"<target>: <ErrorClass>: <text>"`` with nothing of ``url`` but its host."""
    text = scrub_url(str(error), url)
    return f"{target}: {type(error).__name__}" + (f": {text}" if text else "")


def open_private(path: Path) -> TextIO:
    """Open ``path`` for appending (UTF-8); a new file is created with mode 0600, whatever the umask.

    For files that hold alerts (client names, card references): only the service's
    user may read them. An existing file keeps its mode.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _PRIVATE)
    try:
        if os.fstat(fd).st_size == 0:
            os.fchmod(fd, _PRIVATE)  # new (or empty): exact, the umask only removes bits
        return os.fdopen(fd, "a", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


class JsonLinesChannel:
    """Appends each alert payload as one JSON line to ``path`` (parents created, a new file 0600)."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()  # one writer at a time, so lines never interleave

    def __repr__(self) -> str:
        return f"JsonLinesChannel(path={str(self._path)!r})"

    def _append(self, line: str) -> None:
        with self._lock, open_private(self._path) as file:
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
