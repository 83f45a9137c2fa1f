"""URL credentials of webhooks and Alertmanager never reach the outbox, the API, the logs or the fallback mail."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.alerts.delivery.alertmanager import AlertmanagerChannel
from monitor.alerts.delivery.channels import EmailChannel, WebhookChannel
from monitor.alerts.delivery.worker import DeliveryWorker
from monitor.alerts.store import AlertStore
from monitor.api import build_api, start_api
from monitor.domain import Manager, VipFailure

from .conftest import Receiver, SmtpServer

T0 = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
SECRETS = ("hook-user", "Hunter2Pass", "QueryT0ken", "PathT0ken")
API_TOKEN = "secret-leak-test-api-token"
TINY_BACKOFF: dict[str, float] = {"backoff_initial": 0.01, "backoff_max": 0.05, "poll_interval": 0.01}
MakeFailure = Callable[..., VipFailure]


def _with_credentials(url: str) -> str:
    """``url`` with a user, a password, a token in the path and one in the query."""
    scheme, rest = url.split("://", 1)
    host, _, path = rest.partition("/")
    return f"{scheme}://hook-user:Hunter2Pass@{host}/{path.split('?')[0]}/PathT0ken?token=QueryT0ken"


def _our_log(caplog: pytest.LogCaptureFixture) -> str:
    """What cardmon's own loggers wrote (the HTTP client's request log is silenced by `cardmon run`)."""
    return "\n".join(record.getMessage() for record in caplog.records if record.name.startswith("monitor"))


def _leaks(*texts: Any) -> list[str]:
    joined = " ".join(str(text) for text in texts)
    return [secret for secret in SECRETS if secret in joined]


async def _fail_then_fallback(store: AlertStore, channels: dict[str, Any], smtp_server: SmtpServer) -> None:
    fallback = EmailChannel(smtp_server.host, smtp_server.port, sender="cardmon@bank.example",
                            recipient="ops@bank.example", timeout=5)
    worker = DeliveryWorker(store, channels, retry_for=0.2, fallback=fallback, **TINY_BACKOFF)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(20):
            while any(d.status == "pending" for a in store.list_alerts() for d in a.deliveries):
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task


async def _api_answer(store: AlertStore, alert_id: str) -> str:
    server = await start_api(build_api(store, api_token=API_TOKEN))
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            answer = await client.get(f"/alerts/{alert_id}",
                                      headers={"Authorization": f"Bearer {API_TOKEN}"})
            assert answer.status_code == 200
            return answer.text
    finally:
        await server.close()


@pytest.mark.parametrize("failure", ["refused", "unreachable"])
async def test_a_webhook_url_with_credentials_never_leaks(
    failure: str, tmp_path: Path, make_failure: MakeFailure, smtp_server: SmtpServer,
    http_receiver: Callable[[list[int]], Awaitable[Receiver]], unused_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A webhook answering 500, or not listening, at a URL with user:pass@, a path token and a query token: none of them is in last_error, the API answer, the log or the fallback mail."""
    caplog.set_level(logging.DEBUG)
    if failure == "refused":
        url = _with_credentials((await http_receiver([500])).url)
    else:
        url = _with_credentials(f"http://127.0.0.1:{unused_port}/hooks/rm")
    manager = Manager(manager_id="RM-2", name="Bo Chen", webhook_url=url, timezone="UTC")
    with AlertStore(tmp_path / "alerts.db") as store:
        store.record([make_failure("ev-0", T0, manager=manager)])
        await _fail_then_fallback(store, {"webhook": WebhookChannel(timeout=2)}, smtp_server)
        (alert,) = store.list_alerts()
        answer = await _api_answer(store, alert.alert_id)
    (delivery,) = alert.deliveries
    assert delivery.status == "failed"
    assert "webhook at 127.0.0.1:" in (delivery.last_error or "")
    (mail,) = smtp_server.mail.messages
    assert "UNDELIVERED" in str(mail["Subject"])
    assert _leaks(delivery.last_error, answer, _our_log(caplog), mail.get_content(), repr(manager)) == []


async def test_an_alertmanager_url_with_credentials_never_leaks(
    tmp_path: Path, make_failure: MakeFailure, smtp_server: SmtpServer,
    http_receiver: Callable[[list[int]], Awaitable[Receiver]], caplog: pytest.LogCaptureFixture,
) -> None:
    """An Alertmanager that refuses, at a URL with user:pass@ and tokens: no part of them is in last_error, the API answer, the log or the fallback mail."""
    caplog.set_level(logging.DEBUG)
    url = _with_credentials((await http_receiver([500])).url)  # no /api/v2/alerts there: 404
    with AlertStore(tmp_path / "alerts.db") as store:
        store.record([make_failure("ev-0", T0)], sinks=["alertmanager"], channels=())
        channel = AlertmanagerChannel(url, timeout=2)
        await _fail_then_fallback(store, {"alertmanager": channel}, smtp_server)
        (alert,) = store.list_alerts()
        answer = await _api_answer(store, alert.alert_id)
    (delivery,) = alert.deliveries
    assert delivery.status == "failed" and "answered HTTP 404" in (delivery.last_error or "")
    (mail,) = smtp_server.mail.messages
    assert _leaks(delivery.last_error, answer, _our_log(caplog), mail.get_content(), repr(channel)) == []
