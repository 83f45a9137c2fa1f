"""A sign-in link through the manager's own chat channel (Apprise) when they have no e-mail address."""

from __future__ import annotations

import logging
import re

import pytest

from monitor.alerts.delivery.apprise import AppriseChannel
from monitor.alerts.delivery.channels import EmailChannel
from monitor.domain import Manager
from monitor.testing.smtp import SmtpSink
from monitor.workspace import SignInMailer, SignInTokens
from tests.receivers import JsonReceiver

SECRET = "workspace-secret-for-chat-tests-0123"
PUBLIC_URL = "https://cardmon.bank.example"
LINK = re.compile(r"https://cardmon\.bank\.example/workspace/sign-in/\S+")


def _mailer(managers: dict[str, Manager], smtp_sink: SmtpSink | None) -> SignInMailer:
    tokens = SignInTokens(SECRET, max_age_seconds=900)
    email = (EmailChannel(smtp_sink.host, smtp_sink.port, sender="cardmon@bank.example")
             if smtp_sink is not None else None)
    return SignInMailer(tokens, PUBLIC_URL, managers=lambda: managers, email=email,
                        chat=AppriseChannel(timeout=5))


async def test_a_manager_without_e_mail_gets_the_link_in_their_chat(json_receiver: JsonReceiver, smtp_sink: SmtpSink) -> None:
    """No address in the registry: the link goes to the manager's first chat target, in their language."""
    wei = Manager(manager_id="RM-088", name="Wei Zhang", locale="zh-Hans",
                  apprise_urls=(f"{json_receiver.base}/200/wei", f"{json_receiver.base}/200/second"))
    assert await _mailer({"RM-088": wei}, smtp_sink).send("RM-088")
    [(path, body)] = json_receiver.posts
    assert path == "/200/wei"  # the first target only
    assert LINK.search(body["message"]) is not None
    assert body["title"] != "Your cardmon sign-in link"  # translated for a zh-Hans reader
    assert smtp_sink.deliveries() == []


async def test_e_mail_wins_over_chat_and_chat_stands_in_without_a_relay(json_receiver: JsonReceiver, smtp_sink: SmtpSink) -> None:
    """With an address and a relay the link is mailed, not chatted; with no relay the chat target gets it."""
    claire = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example",
                     apprise_urls=(f"{json_receiver.base}/200/claire",))
    assert await _mailer({"RM-017": claire}, smtp_sink).send("RM-017")
    assert [to for to, _, _ in smtp_sink.deliveries()] == [claire.email] and json_receiver.posts == []
    assert await _mailer({"RM-017": claire}, None).send("claire.martin@bank.example")
    assert [path for path, _ in json_receiver.posts] == ["/200/claire"]


async def test_a_failing_chat_target_is_logged_without_its_url_or_the_link(
        json_receiver: JsonReceiver, caplog: pytest.LogCaptureFixture) -> None:
    """A chat service that refuses is one warning naming the manager, never the URL's token or the link."""
    wei = Manager(manager_id="RM-088", name="Wei Zhang", apprise_urls=(f"{json_receiver.base}/500/s3cret-token",))
    with caplog.at_level(logging.WARNING):
        assert not await _mailer({"RM-088": wei}, None).send("RM-088")
    logged = caplog.text
    assert "RM-088" in logged and "chat channel failed" in logged
    assert "s3cret-token" not in logged and "/workspace/sign-in/" not in logged


async def test_nobody_reachable_gets_nothing_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """No address and no chat target: nothing is sent, a warning names the manager."""
    nomail = Manager(manager_id="RM-099", name="Nomail Person")
    with caplog.at_level(logging.WARNING):
        assert not await _mailer({"RM-099": nomail}, None).send("RM-099")
    assert "RM-099" in caplog.text and "no chat channel" in caplog.text
