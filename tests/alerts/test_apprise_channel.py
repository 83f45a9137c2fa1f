"""The Apprise channel against a real HTTP receiver and a real SMTP server."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.alerts.delivery.apprise import AppriseChannel, is_apprise_url
from monitor.alerts.delivery.channels import Channel, DeliveryError
from monitor.alerts.delivery.worker import DeliveryWorker
from monitor.alerts.messages.alert import AlertMessage
from monitor.alerts.routing import parse_channels
from monitor.alerts.store import AlertStore
from monitor.domain import Manager, VipFailure
from monitor.secrets import redact_urls
from tests.receivers import JsonReceiver

T0 = datetime(2024, 5, 6, 12, 1, 30, tzinfo=UTC)
SUBJECT = "[HIGH] Ada Lovelace (private): cash withdrawal of €1,234.50 failed (51 Insufficient funds)"
TEXT = "Client:    Ada Lovelace — private\nCard:    411111******1111\n"
MakeFailure = Callable[..., VipFailure]


def _message() -> AlertMessage:
    return AlertMessage(alert_id="al-0123456789abcdef0123", subject=SUBJECT, text=TEXT,
                        email="claire.martin@bank.example").for_channel("apprise:0")


def test_the_channel_is_a_channel_whose_repr_hides_urls() -> None:
    """AppriseChannel satisfies the Channel protocol and its repr names no URL."""
    channel = AppriseChannel(["tgram://123456789:AAH-bot-s3cret/-100987654"])
    assert isinstance(channel, Channel)
    assert "s3cret" not in repr(channel) and "1 hidden" in repr(channel)


async def test_json_target_receives_subject_as_title_and_text_as_body(json_receiver: JsonReceiver) -> None:
    """A ``json://`` target gets one POST whose title is the subject and message the body."""
    await AppriseChannel([f"{json_receiver.base}/200/rm-017"]).send(_message())
    ((path, body),) = json_receiver.posts
    assert path == "/200/rm-017"
    assert body["title"] == SUBJECT
    assert body["message"] == TEXT.rstrip("\n")
    assert body["type"] == "failure"


async def test_mailto_target_delivers_to_a_real_smtp_server(smtp_server: Any) -> None:
    """A ``mailto://`` target sends the subject and body to the named address through SMTP."""
    url = (f"mailto://{smtp_server.host}:{smtp_server.port}"
           "?from=cardmon@bank.example&to=ops@bank.example")
    await AppriseChannel([url]).send(_message())
    (mail,) = smtp_server.mail.messages
    assert smtp_server.mail.recipients == [["ops@bank.example"]]
    assert mail["Subject"] == SUBJECT
    assert "411111******1111" in mail.get_content()


async def test_a_refusing_target_raises_naming_the_service_not_the_url(
    json_receiver: JsonReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """HTTP 500 raises DeliveryError naming the JSON service; neither it nor any log line has the URL's token."""
    with caplog.at_level(logging.DEBUG), pytest.raises(DeliveryError, match=r"1 of 1 target\(s\) failed \(JSON\)") as caught:
        await AppriseChannel([f"{json_receiver.base}/500/token-s3cret"]).send(_message())
    assert len(json_receiver.posts) == 1  # the channel itself never retries
    assert "s3cret" not in str(caught.value)
    apprise_lines = [r.getMessage() for r in caplog.records if r.name.startswith("apprise")]
    assert apprise_lines  # the warning is kept...
    assert not any("s3cret" in line or "Ada Lovelace" in line for line in apprise_lines)  # ...clean


async def test_every_target_must_accept(json_receiver: JsonReceiver) -> None:
    """With two targets, one refusing fails the send although the other received it."""
    channel = AppriseChannel([f"{json_receiver.base}/200/a", f"{json_receiver.base}/503/b"])
    with pytest.raises(DeliveryError, match=r"1 of 2 target\(s\) failed"):
        await channel.send(_message())
    assert sorted(path for path, _ in json_receiver.posts) == ["/200/a", "/503/b"]


def test_unknown_urls_are_refused_by_index() -> None:
    """A URL Apprise does not know is refused at construction; the error gives its index, not the URL."""
    assert not is_apprise_url("nosuchservice://s3cret@host")
    assert is_apprise_url("wecombot://botkey") and is_apprise_url("dingtalk://token/")
    with pytest.raises(ValueError, match="#1 is not a URL Apprise") as caught:
        AppriseChannel(["json://localhost", "nosuchservice://s3cret@host"])
    assert "s3cret" not in str(caught.value)


async def test_no_url_is_refused(json_receiver: JsonReceiver) -> None:
    """The unbound template channel refuses to send (it needs ``to(url)`` first)."""
    with pytest.raises(DeliveryError, match="no Apprise URL"):
        await AppriseChannel().send(_message())
    await AppriseChannel().to(f"{json_receiver.base}/200/bound").send(_message())
    assert [path for path, _ in json_receiver.posts] == ["/200/bound"]


def test_redaction_keeps_the_scheme_only() -> None:
    """URL-shaped text loses everything after ``scheme://``."""
    assert redact_urls("POST to https://api.example/bot123:s3cret/send failed") == \
        "POST to https://<redacted> failed"


async def test_worker_resolves_a_route_key_to_the_managers_url(
    tmp_path: Path, make_failure: MakeFailure, json_receiver: JsonReceiver
) -> None:
    """An ``apprise:1`` outbox row goes to the manager's second URL from the registry; metrics see ``apprise``."""
    prefs = parse_channels(f"high=apprise:{json_receiver.base}/200/first,"
                           f"apprise:{json_receiver.base}/200/second")
    registry_manager = Manager(manager_id="RM-017", name="Claire Martin", timezone="Europe/Paris",
                               channels=prefs.channels, apprise_urls=prefs.apprise_urls)
    results: list[tuple[str, str]] = []
    with AlertStore(tmp_path / "alerts.db") as store:
        store.record([make_failure("ev-1", T0, manager=registry_manager)],
                     channels=("email", "webhook", "apprise"))
        worker = DeliveryWorker(
            store, {"apprise": AppriseChannel(timeout=5)},
            managers={"RM-017": registry_manager}.get,
            on_result=lambda channel, status, _: results.append((channel, status)),
        )
        assert await worker.deliver_due() == 2
        (alert,) = store.list_alerts()
    assert sorted(path for path, _ in json_receiver.posts) == ["/200/first", "/200/second"]
    assert all(body["title"].startswith("[HIGH] Ada Lovelace") for _, body in json_receiver.posts)
    assert sorted(d.channel for d in alert.deliveries) == ["apprise:0", "apprise:1"]
    assert alert.status == "notified"
    assert results == [("apprise", "sent"), ("apprise", "sent")]
