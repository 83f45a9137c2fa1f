"""Fault: the bank's mail relay goes down under a running monitor, stays down, then comes back.

The monitor runs for real (``MonitorApp``: the embedded broker, the consumer, the
alert store, the delivery worker) with an aiosmtpd relay on 127.0.0.1. Managers'
alerts arrive while the relay is up, then while it is stopped (its port closed, every
connection refused), then the relay starts again on the same port. The test proves:

* every manager e-mail arrives exactly once (counted by ``Message-ID``), including
  the ones recorded during the outage;
* the fallback is told after ``fallback_after_seconds``, once per e-mail, while the
  retries go on: the operations channel (Apprise ``json://`` to a real HTTP receiver)
  and the backup manager from the registry (their webhook);
* the states read right all along: during the outage an alert only the ``jsonl``
  sink has is ``open`` (the API lists none as notified), it becomes ``notified``
  when a person's channel (the backup's webhook) accepts it, and the manager's own
  e-mail is recorded when it finally goes.

Two runs: a relay down for **ten minutes** with the retry backoff capped at 30 s (the
issue's scenario, about 11 minutes), and the same with seconds for everyday runs.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from monitor.app import MonitorApp
from monitor.config import Settings
from monitor.testing.fixtures import monitor_settings, wait_until
from monitor.testing.smtp import SmtpSink
from tests.helpers import encode, event, write_registry

API_TOKEN = "smtp-outage-api-token-0123456789"
MANAGERS = ("RM-001", "RM-002", "RM-003")
BACKUP = "RM-900"

pytestmark = pytest.mark.usefixtures("clean_environment")  # monitor.testing.fixtures


@dataclass(frozen=True)
class Outage:
    """How long the relay is down and the delivery settings that go with it (seconds)."""

    down: float
    backoff_max: float
    fallback_after: float


SECONDS = Outage(down=10.0, backoff_max=1.0, fallback_after=4.0)
TEN_MINUTES = Outage(down=600.0, backoff_max=30.0, fallback_after=60.0)


@dataclass
class Receiver:
    """A real HTTP receiver: the backup manager's webhook and the operations Apprise ``json://`` target."""

    url: str = ""
    posts: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)  # (path, headers, body)
    times: list[float] = field(default_factory=list)  # time.monotonic() of each post

    def on(self, path: str) -> list[tuple[dict[str, str], Any]]:
        return [(headers, body) for at, headers, body in self.posts if at == path]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """Accepts every POST (2xx) and keeps it."""
    received = Receiver()

    async def accept(request: web.Request) -> web.Response:
        received.posts.append((request.path, dict(request.headers), await request.json()))
        received.times.append(time.monotonic())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/{tail:.*}", accept)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    received.url = f"127.0.0.1:{runner.addresses[0][1]}"
    yield received
    await runner.cleanup()


def _settings(tmp_path: Path, bootstrap: str, unique: str, relay: SmtpSink, receiver: Receiver,
              outage: Outage) -> Settings:
    customers = ["customer_id,name,tier,manager_id,card_refs"]
    managers = ["manager_id,name,email,webhook_url,backup_manager_id,timezone"]
    for m, manager_id in enumerate(MANAGERS):
        managers.append(f"{manager_id},Manager {m},rm{m}@bank.example,,{BACKUP},Europe/Paris")
        customers += [f"C{m}{c},Client {m}-{c},private,{manager_id},tok-{m}-{c}" for c in range(3)]
    managers.append(f"{BACKUP},Backup Desk,,http://{receiver.url}/backup,,Europe/Paris")
    registry = write_registry(tmp_path / "registry", "\n".join(customers), "\n".join(managers))
    return monitor_settings(
        tmp_path, bootstrap, unique, vip_registry=registry,
        alerting={"sinks": ["jsonl"], "jsonl_path": tmp_path / "alerts.jsonl",
                  "smtp": {"host": relay.host, "port": relay.port, "from_address": "cardmon@bank.example",
                           "timeout_seconds": 5},
                  "poll_interval_seconds": 0.1, "retry_for_seconds": 3600,
                  "backoff_initial_seconds": 0.5, "backoff_max_seconds": outage.backoff_max,
                  "fallback": ["backup_manager", "apprise"],
                  "fallback_apprise_url": f"json://{receiver.url}/ops",
                  "fallback_after_seconds": outage.fallback_after},
        health={"consume_status": False},
        api={"token": API_TOKEN},
    )


async def _send(bootstrap: str, topic: str, cards: list[str], prefix: str) -> None:
    """One failed transaction per card, now: an expired card (54), a medium alert that never escalates."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for n, card in enumerate(cards):
            value = event(f"{prefix}-{n}", occurred_at=datetime.now(UTC).isoformat(), card_ref=card,
                          response_code="54", terminal_id=f"ATM{n:05d}")
            await producer.send_and_wait(topic, encode(value), key=value["terminal_id"].encode())
    finally:
        await producer.stop()


@pytest.mark.integration
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("outage", [SECONDS, TEN_MINUTES], ids=["seconds", "ten-minutes"])
async def test_a_relay_down_then_back_loses_nothing_doubles_nothing_and_tells_the_fallback_in_time(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path, receiver: Receiver, outage: Outage) -> None:
    """Mail relay down, then back on the same port: each manager e-mail arrives once, the backup and operations are told once per e-mail after the delay, and no alert reads notified because of the jsonl sink."""
    relay = SmtpSink().start()
    settings = _settings(tmp_path, kafka_bootstrap, unique_name, relay, receiver, outage)
    monitor = MonitorApp(settings, metrics_registry=CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    store = monitor.store
    api = f"http://127.0.0.1:{settings.api.port}"
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    try:
        # Before: one client of each manager; three e-mails.
        await _send(kafka_bootstrap, settings.kafka.topic, [f"tok-{m}-0" for m in range(3)], "before")
        await wait_until(lambda: len(relay.messages()) == 3, timeout=60, what="three e-mails before")
        before = {a.alert_id for a in store.list_alerts()}

        relay.stop()
        down_at = time.monotonic()
        # During: two more clients of each manager.
        await _send(kafka_bootstrap, settings.kafka.topic,
                    [f"tok-{m}-{c}" for m in range(3) for c in (1, 2)], "during")
        await wait_until(lambda: len(store.list_alerts()) == 9, timeout=60, what="six alerts recorded")
        during = {a.alert_id for a in store.list_alerts()} - before
        await wait_until(lambda: all(d.status == "sent" for a in during
                                     for d in store.get_alert(a).deliveries  # type: ignore[union-attr]
                                     if d.channel == "jsonl"), timeout=60, what="the jsonl sink")
        if time.monotonic() - down_at < outage.fallback_after - 1:  # the fallback's delay is not over
            assert {store.state_of(a) for a in during} == {"open"}
            async with httpx.AsyncClient(base_url=api, headers=headers) as http:
                listed = (await http.get("/alerts", params={"state": "notified"})).json()["alerts"]
            assert {a["alert_id"] for a in listed} == before, "the jsonl sink made an alert notified"

        # The fallback, after its delay, once per e-mail: operations and the backup manager.
        await wait_until(lambda: len(receiver.on("/ops")) == 6 and len(receiver.on("/backup")) == 6,
                         timeout=outage.fallback_after + 60, what="the fallback told of six e-mails")
        assert min(receiver.times) - down_at >= outage.fallback_after
        assert len(relay.messages()) == 3
        # A person (the backup) accepted them: notified by their webhook, not by the jsonl sink.
        await wait_until(lambda: {store.state_of(a) for a in during} == {"notified"}, timeout=30,
                         what="the backup's deliveries recorded")
        notified = {a: [(h.actor, h.via) for h in store.history(a) if h.action == "notified"]
                    for a in during}
        assert all(entries == [(BACKUP, "webhook")] for entries in notified.values()), notified
        pending = [d for a in during for d in store.get_alert(a).deliveries  # type: ignore[union-attr]
                   if d.channel == "email"]
        assert {(d.status, d.fallback_at is not None) for d in pending} == {("pending", True)}

        # The relay stays down for the whole outage, then comes back on the same port.
        await asyncio.sleep(max(0.0, outage.down - (time.monotonic() - down_at)))
        relay.start()
        await wait_until(lambda: len(relay.messages()) == 9, timeout=outage.backoff_max + 60,
                         what="the six e-mails of the outage")
        await asyncio.sleep(outage.backoff_max + 2)  # a second copy, or a second fallback, would come now
        alerts = {a.alert_id: a for a in store.list_alerts()}
        histories = {a: store.history(a) for a in alerts}
        fallback_sent = monitor.metrics_registry.get_sample_value(
            "cardmon_alerts_total", {"channel": "fallback", "status": "sent"})
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)
        relay.stop()

    # Each manager e-mail exactly once, to the right manager.
    assert relay.message_ids() == {f"<{a}.email@bank.example>": 1 for a in alerts}
    assert sorted(to[0] for to, _ in relay.messages()) == sorted(
        f"rm{m}@bank.example" for m in range(3) for _ in range(3))
    # The fallback was told once per e-mail of the outage, and never again.
    ops = receiver.on("/ops")
    assert len(ops) == 6 and all(body["title"].startswith("[UNDELIVERED via email]") for _, body in ops)
    assert all("keeps trying until" in body["message"] for _, body in ops)
    backup = receiver.on("/backup")
    assert Counter(h["Idempotency-Key"] for h, _ in backup) == {f"{a}:webhook:{BACKUP}": 1 for a in during}
    assert all(body["subject"].startswith("[MEDIUM][BACKUP]") for _, body in backup)
    assert fallback_sent == 6
    # After: every alert is notified; the outage's ones by the backup, then by their manager's e-mail.
    assert {a.status for a in alerts.values()} == {"notified"}
    for alert_id in during:
        actions = [(h.action, h.actor, h.via) for h in histories[alert_id]]
        assert actions[0][0] == "opened" and ("fallback", "cardmon", "fallback") in actions
        assert [a for a in actions if a[0] == "notified"] == [
            ("notified", BACKUP, "webhook"), ("notified", alerts[alert_id].manager.manager_id, "email")]
        (mail,) = [d for d in alerts[alert_id].deliveries if d.channel == "email"]
        assert mail.status == "sent" and mail.sent_at is not None
