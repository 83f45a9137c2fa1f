"""Storm control end to end: the running monitor, the real broker, real SMTP and HTTP receivers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from monitor.alerts.store import AlertStore
from monitor.app import MonitorApp
from monitor.config import Settings
from monitor.kafka.clients import ensure_topics
from monitor.paths import rules_path
from monitor.testing.fixtures import monitor_settings, wait_until
from monitor.testing.smtp import SmtpSink
from tests.helpers import encode, event, write_registry

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
OUTAGE_ATM = "ATM-OUT-1"


pytestmark = pytest.mark.usefixtures("clean_environment")  # monitor.testing.fixtures


@dataclass
class Hooks:
    """A real HTTP receiver; ``posts`` holds (manager ID from the URL, idempotency key, JSON body)."""

    url: str = ""
    posts: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    """An aiohttp webhook receiver answering 200 to every POST on /rm/{manager}."""
    received = Hooks()

    async def hook(request: web.Request) -> web.Response:
        received.posts.append((request.match_info["manager"], request.headers.get("Idempotency-Key", ""),
                               await request.json()))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/rm/{manager}", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    received.url = f"http://127.0.0.1:{runner.addresses[0][1]}/rm"
    yield received
    await runner.cleanup()


def policy_file(folder: Path, **incidents: Any) -> Path:
    """The repository's alert policy with test-sized storm-control delays."""
    policy = yaml.safe_load(rules_path("alerting.yaml").read_text(encoding="utf-8"))
    policy["incidents"].update(incidents)
    path = folder / "alerting.yaml"
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    return path


def settings_for(tmp_path: Path, bootstrap: str, unique: str, registry: tuple[Path, Path],
                 smtp_port: int, policy: Path) -> Settings:
    return monitor_settings(
        tmp_path, bootstrap, unique, vip_registry=registry,
        kafka={"batch_max_records": 40},
        # The events carry fixed past times (T0): none is stale here.
        alerting={"policy_path": policy, "stale_after_seconds": None,
                  "smtp": {"host": "127.0.0.1", "port": smtp_port, "from_address": "cardmon@bank.test"}},
        api={"link_secret": "storm-test-link-secret"},
    )


async def produce(bootstrap: str, topic: str, values: list[dict[str, Any]], chunk: int = 20) -> None:
    """Send events in chunks, a little apart, so the monitor sees several batches."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for start in range(0, len(values), chunk):
            for value in values[start:start + chunk]:
                await producer.send(topic, encode(value), key=value["terminal_id"].encode())
            await producer.flush()
            await asyncio.sleep(0.1)
    finally:
        await producer.stop()


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_an_atm_outage_hitting_50_vips_of_10_managers_is_one_incident_and_one_message_each(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path, smtp_sink: SmtpSink,
        hooks: Hooks) -> None:
    """One ATM failing every client for two minutes: one incident; each manager gets exactly one message naming their five clients."""
    managers = ["manager_id,name,email,webhook_url,timezone"]
    customers = ["customer_id,name,tier,manager_id,card_refs"]
    for m in range(1, 11):
        manager = f"M{m:02d}"
        # Half the managers read e-mail, half a webhook (their chat bridge).
        contact = f"rm{m:02d}@bank.test," if m <= 5 else f",{hooks.url}/{manager}"
        managers.append(f"{manager},Manager {m:02d},{contact},Europe/Paris")
        for c in range(1, 6):
            customers.append(f"C{m:02d}{c},Client {m:02d}-{c},private,{manager},tok-{m:02d}-{c}")
    customers.append("C999,Lone Client,private,M01,tok-lone")
    registry = write_registry(tmp_path / "registry", "\n".join(customers), "\n".join(managers))
    policy = policy_file(tmp_path, group_wait_seconds=4, group_interval_seconds=300)
    settings = settings_for(tmp_path, kafka_bootstrap, unique_name, registry, smtp_sink.port, policy)

    values: list[dict[str, Any]] = []
    vips = [f"tok-{m:02d}-{c}" for c in range(1, 6) for m in range(1, 11)]
    for i, card in enumerate(vips):  # 50 VIP failures over 2 minutes, with other clients' in between
        values.append(event(f"vip-{i}", occurred_at=at(i * 2.4), terminal_id=OUTAGE_ATM,
                            card_ref=card, response_code="91"))
        if i % 3 == 0:
            values.append(event(f"other-{i}", occurred_at=at(i * 2.4 + 1), terminal_id=OUTAGE_ATM,
                                card_ref=f"tok-walkin-{i}", response_code="91"))
        values.append(event(f"ok-{i}", occurred_at=at(i * 2.4 + 0.5), terminal_id="ATM-FINE-2",
                            card_ref=f"tok-walkin-ok-{i}", response_code="00"))
    # A VIP failure elsewhere is not part of the outage: it goes out on its own.
    values.append(event("lone", occurred_at=at(60), terminal_id="ATM-FINE-2", card_ref="tok-lone",
                        response_code="91"))
    # The rest of the fleet goes on serving clients: the watermark passes the outage's
    # last bucket, so its figures are final (docs/incidents.md, "Event time").
    values += [event(f"after-{s}", occurred_at=at(120 + s), terminal_id="ATM-FINE-2",
                     card_ref=f"tok-after-{s}", response_code="00") for s in range(0, 30, 2)]

    # Two minutes of event time are produced in about a second: the monitor reads them
    # as a backlog (had it read them live, a partition whose share of a chunk became
    # readable a moment after another's would be read as events arriving too late).
    await ensure_topics(settings.kafka)
    await produce(kafka_bootstrap, settings.kafka.topic, values)
    monitor = MonitorApp(settings, metrics_registry=CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:

        def delivered() -> int:
            return len(smtp_sink.deliveries()) + len(hooks.posts)

        await wait_until(lambda: delivered() >= 11, timeout=60, what="ten notices and one alert")
        await asyncio.sleep(3)  # anything sent twice, or late, would arrive now
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    mails, posts = smtp_sink.deliveries(), list(hooks.posts)
    by_manager: dict[str, list[str]] = {}
    for to, subject, body in mails:
        by_manager.setdefault(to.split("@")[0].replace("rm", "M"), []).append(subject + "\n" + body)
    for manager, _, body in posts:
        by_manager.setdefault(manager, []).append(body["subject"] + "\n" + body["text"])
    assert sorted(by_manager) == [f"M{m:02d}" for m in range(1, 11)]
    with AlertStore(tmp_path / "alerts.db") as store:
        incidents = store.list_incidents()
        assert [(i.scope, i.scope_key, i.alert_count, i.manager_count) for i in incidents] == [
            ("terminal", OUTAGE_ATM, 50, 10)]
        incident = incidents[0]
        assert incident.failures == 67 and incident.started_at == T0
    for m in range(1, 11):
        messages = by_manager[f"M{m:02d}"]
        notices = [text for text in messages if "INCIDENT" in text.splitlines()[0]]
        assert len(notices) == 1, (m, [text.splitlines()[0] for text in messages])
        notice = notices[0]
        assert incident.incident_id in notice and OUTAGE_ATM in notice
        assert "5 of your clients affected" in notice.splitlines()[0]
        named = {f"Client {n:02d}-{c}" for n in range(1, 11) for c in range(1, 6) if f"Client {n:02d}-{c} " in notice}
        assert named == {f"Client {m:02d}-{c}" for c in range(1, 6)}
    # M01 also has the lone client's own alert; nobody else got anything more.
    assert len(by_manager["M01"]) == 2 and "Lone Client" in by_manager["M01"][0] + by_manager["M01"][1]
    assert all(len(by_manager[f"M{m:02d}"]) == 1 for m in range(2, 11))
    # Webhook notices carry a stable idempotency key and the structured client list.
    for manager, key, body in posts:
        assert key.startswith("ic-") and body["schema"] == "cardmon.incident.v1"
        assert body["incident"]["incident_id"] == incident.incident_id
        assert len(body["clients"]) == 5 and all(c["ack_url"] for c in body["clients"])
    assert len({key for _, key, _ in posts}) == len(posts) == 5


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_a_terminal_flapping_every_30_seconds_for_10_minutes_is_one_incident_with_a_flapping_note(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """Fail 30 s, recover 30 s, for ten minutes: one incident marked flapping, one message, then one all-clear to the manager who opted in."""
    registry = write_registry(
        tmp_path / "registry",
        "customer_id,name,tier,manager_id,card_refs\n"
        + "\n".join(f"V{i},VIP {i},private,{'M1' if i % 2 else 'M2'},tok-v{i}" for i in range(20)),
        "manager_id,name,email,timezone,notify_resolved\n"
        "M1,Opted In,m1@bank.test,Europe/Paris,yes\n"
        "M2,Not Opted,m2@bank.test,Asia/Shanghai,no\n")
    policy = policy_file(tmp_path, group_wait_seconds=3, group_interval_seconds=300)
    settings = settings_for(tmp_path, kafka_bootstrap, unique_name, registry, smtp_sink.port, policy)
    flapping = "POS-FLAP-7"
    values: list[dict[str, Any]] = []
    for cycle in range(10):
        start = cycle * 60
        for s in range(0, 30, 3):  # failing half-minute: VIPs and walk-in clients
            card = f"tok-v{(cycle * 2 + s // 15) % 20}" if s % 15 == 0 else f"tok-walkin-{cycle}-{s}"
            values.append(event(f"f-{cycle}-{s}", occurred_at=at(start + s), terminal_id=flapping,
                                channel="POS", txn_type="purchase", card_ref=card, response_code="96"))
        for s in range(30, 60, 3):  # recovered half-minute
            values.append(event(f"a-{cycle}-{s}", occurred_at=at(start + s), terminal_id=flapping,
                                channel="POS", txn_type="purchase", card_ref=f"tok-ok-{cycle}-{s}",
                                response_code="00"))
    monitor = MonitorApp(settings, metrics_registry=CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        await produce(kafka_bootstrap, settings.kafka.topic, values, chunk=40)
        await wait_until(lambda: len(smtp_sink.deliveries()) >= 2, timeout=60, what="one notice per manager")
        await asyncio.sleep(2)
        first = smtp_sink.deliveries()
        # Then the terminal works for six minutes: the incident ends.
        healthy = [event(f"h-{s}", occurred_at=at(600 + s), terminal_id=flapping, channel="POS",
                         txn_type="purchase", card_ref=f"tok-h-{s}", response_code="00")
                   for s in range(0, 360, 5)]
        await produce(kafka_bootstrap, settings.kafka.topic, healthy, chunk=40)
        await wait_until(lambda: len(smtp_sink.deliveries()) >= 3, timeout=30, what="the resolved follow-up")
        await asyncio.sleep(2)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    with AlertStore(tmp_path / "alerts.db") as store:
        incidents = store.list_incidents()
    assert len(incidents) == 1
    incident = incidents[0]
    assert (incident.scope_key, incident.flapping, incident.relapses) == (flapping, True, 9)
    assert incident.ended_at == T0 + timedelta(seconds=567)  # its last failure
    assert len(first) == 2
    for to, subject, body in first:
        assert subject.startswith("[INCIDENT HIGH]") and subject.endswith("(flapping)"), subject
        assert "flapping: failed again 9 times after recovering" in body
        assert incident.incident_id in body
    mails = smtp_sink.deliveries()
    assert sorted(to for to, _, _ in mails) == ["m1@bank.test", "m1@bank.test", "m2@bank.test"]
    resolved = [(to, subject) for to, subject, _ in mails if subject.startswith("[RESOLVED]")]
    assert resolved == [("m1@bank.test", resolved[0][1])]
