"""Each delivery channel on its own, against real files, a real SMTP server and a real receiver."""

from __future__ import annotations

import io
import json
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from monitor import alerts
from monitor.alerts.delivery.channels import (
    Channel,
    ConsoleChannel,
    DeliveryError,
    EmailChannel,
    JsonLinesChannel,
    WebhookChannel,
)
from monitor.alerts.messages.alert import AlertMessage

StartReceiver = Callable[[list[int]], Awaitable[Any]]


def _message(**overrides: Any) -> AlertMessage:
    fields: dict[str, Any] = {
        "alert_id": "al-0123456789abcdef0123",
        "subject": "[HIGH] Ada Lovelace (private): cash withdrawal of €1,234.50 failed (51 Insufficient funds)",
        "text": "Client:    Ada Lovelace — private\nCard:    411111******1111 [ATM]\n",
        "payload": {"alert_id": "al-0123456789abcdef0123", "amount": "€1,234.50"},
        "email": "claire.martin@bank.example",
    }
    fields.update(overrides)
    return AlertMessage(**fields).for_channel("test")


def test_every_channel_satisfies_the_protocol(tmp_path: Path) -> None:
    """All four channels are Channels (one async send method)."""
    for channel in (EmailChannel("127.0.0.1", sender="a@b.example"), WebhookChannel(),
                    JsonLinesChannel(tmp_path / "a.jsonl"), ConsoleChannel()):
        assert isinstance(channel, Channel)


def test_package_exports_exactly_its_public_names() -> None:
    """``monitor.alerts.__all__`` is sorted and every name in it resolves (on first use)."""
    assert sorted(alerts.__all__) == alerts.__all__
    for name in alerts.__all__:
        assert not isinstance(getattr(alerts, name), types.ModuleType), name


async def test_email_is_plain_text_utf8_to_the_manager(smtp_server: Any) -> None:
    """The e-mail goes to the manager with the subject and body intact, non-ASCII included."""
    channel = EmailChannel(smtp_server.host, smtp_server.port, sender="cardmon@bank.example")
    await channel.send(_message())
    (mail,) = smtp_server.mail.messages
    assert smtp_server.mail.recipients == [["claire.martin@bank.example"]]
    assert mail["From"] == "cardmon@bank.example"
    assert mail["Subject"] == _message().subject
    assert mail["X-Cardmon-Alert-Id"] == "al-0123456789abcdef0123"
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content().replace("\r\n", "\n") == _message().text


async def test_email_without_an_address_is_refused() -> None:
    """A message with no manager e-mail raises before any connection is made."""
    channel = EmailChannel("127.0.0.1", 1, sender="cardmon@bank.example")
    with pytest.raises(DeliveryError, match="no e-mail address"):
        await channel.send(_message(email=None))


async def test_webhook_posts_the_payload_with_the_idempotency_key(http_receiver: StartReceiver) -> None:
    """The payload arrives as JSON with ``Idempotency-Key: <alert_id>:<channel>``."""
    receiver = await http_receiver([204])
    await WebhookChannel(timeout=5).send(_message(webhook_url=receiver.url))
    ((headers, body),) = receiver.requests
    assert headers["Idempotency-Key"] == "al-0123456789abcdef0123:test"
    assert headers["Content-Type"] == "application/json"
    assert body == {"alert_id": "al-0123456789abcdef0123", "amount": "€1,234.50"}


async def test_webhook_non_2xx_raises_without_the_url_secret(http_receiver: StartReceiver) -> None:
    """A 4xx answer raises an error naming the host and status, not the URL's token."""
    receiver = await http_receiver([410])
    with pytest.raises(DeliveryError, match="answered HTTP 410") as caught:
        await WebhookChannel(timeout=5).send(_message(webhook_url=receiver.url))
    assert "s3cret" not in str(caught.value)


async def test_jsonl_appends_one_object_per_message(tmp_path: Path) -> None:
    """Each send appends one JSON line; missing parent directories are created."""
    path = tmp_path / "var" / "out" / "alerts.jsonl"
    channel = JsonLinesChannel(path)
    await channel.send(_message())
    await channel.send(_message(payload={"alert_id": "al-2"}))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["alert_id"] for line in lines] == ["al-0123456789abcdef0123", "al-2"]
    assert "€1,234.50" in lines[0]


async def test_console_prints_subject_and_body_verbatim() -> None:
    """The console block shows the subject and the body, brackets not taken as markup."""
    out = io.StringIO()
    await ConsoleChannel(Console(file=out, width=140, color_system=None)).send(_message())
    printed = out.getvalue()
    assert "[HIGH] Ada Lovelace (private)" in printed
    assert "411111******1111 [ATM]" in printed
