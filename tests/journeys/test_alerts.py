"""Alert journeys through the running monitor: real broker, real SMTP and HTTP receivers, real API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from monitor.alerts.store import AlertStore
from monitor.app import MonitorApp
from monitor.config import Settings
from monitor.paths import rules_path
from monitor.testing.fixtures import monitor_settings, wait_until
from monitor.testing.smtp import SmtpSink
from tests.helpers import encode, event, write_registry

API_TOKEN = "journey-api-token-0123456789"


pytestmark = pytest.mark.usefixtures("clean_environment")  # monitor.testing.fixtures


@dataclass
class Hook:
    """A real webhook receiver answering the given statuses in turn (the last one repeats)."""

    statuses: list[int]
    url: str = ""
    tries: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (Idempotency-Key, body)
    accepted: list[str] = field(default_factory=list)  # keys answered 2xx


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    """A webhook receiver that answers 500 three times, then 200."""
    received = Hook(statuses=[500, 500, 500, 200])

    async def answer(request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        received.tries.append((key, await request.json()))
        status = received.statuses.pop(0) if len(received.statuses) > 1 else received.statuses[0]
        if status < 300:
            received.accepted.append(key)
        return web.json_response({"ok": status < 300}, status=status)

    app = web.Application()
    app.router.add_post("/hooks/rm", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    received.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/rm"
    yield received
    await runner.cleanup()


def settings_for(tmp_path: Path, bootstrap: str, unique: str, registry: tuple[Path, Path],
                 **alerting: Any) -> Settings:
    return monitor_settings(
        tmp_path, bootstrap, unique, vip_registry=registry,
        # The events carry fixed past times (tests.helpers.event): none is stale here.
        alerting={"backoff_initial_seconds": 0.1, "backoff_max_seconds": 0.3,
                  "stale_after_seconds": None, **alerting},
        api={"token": API_TOKEN},
    )


async def send(bootstrap: str, topic: str, values: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, encode(value), key=value["terminal_id"].encode())
    finally:
        await producer.stop()


@pytest.mark.integration
@pytest.mark.timeout(90)
async def test_a_webhook_answering_500_three_times_then_200_gets_the_alert_once_under_one_key(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path, hook: Hook) -> None:
    """The manager's webhook fails three times, then accepts: four tries, one idempotency key, accepted once, alert notified."""
    registry = write_registry(
        tmp_path / "registry", "customer_id,name,tier,manager_id,card_refs\nC1,Ada Lovelace,private,M1,tok-ada",
        f"manager_id,name,webhook_url,timezone\nM1,Alice Martin,{hook.url},Europe/Paris")
    settings = settings_for(tmp_path, kafka_bootstrap, unique_name, registry)
    monitor = MonitorApp(settings, metrics_registry=CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        # A card-class failure (expired card): not an outage, so no storm-control wait.
        await send(kafka_bootstrap, settings.kafka.topic,
                   [event("ev-1", card_ref="tok-ada", response_code="54")])
        await wait_until(lambda: bool(hook.accepted), timeout=30, what="the webhook to accept")
        await asyncio.sleep(1.0)  # a second delivery would arrive now
        alert_id = monitor.store.list_alerts()[0].alert_id
        state = monitor.store.state_of(alert_id)
        [delivery] = monitor.store.list_alerts()[0].deliveries
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    assert [key for key, _ in hook.tries] == [f"{alert_id}:webhook"] * 4
    assert hook.accepted == [f"{alert_id}:webhook"]
    assert {body["alert_id"] for _, body in hook.tries} == {alert_id}
    assert (delivery.status, delivery.attempts, state) == ("sent", 4, "notified")
    assert "HTTP 500" in (delivery.last_error or "")


@pytest.mark.integration
@pytest.mark.timeout(90)
async def test_an_unacknowledged_high_alert_escalates_on_time_and_an_acknowledged_one_does_not(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """Two high alerts; one is acknowledged through the API at once; only the other reaches the backup at 3 s and the team lead at 6 s."""
    policy = yaml.safe_load(rules_path("alerting.yaml").read_text(encoding="utf-8"))
    policy["escalation"]["steps"] = [{"after_seconds": 3, "to": "backup_manager"},
                                     {"after_seconds": 6, "to": "team_lead", "team_lead_id": "LEAD"}]
    (tmp_path / "alerting.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")
    registry = write_registry(
        tmp_path / "registry",
        "customer_id,name,tier,manager_id,card_refs\nC1,Ada Lovelace,private,M1,tok-ada\n"
        "C2,Blaise Pascal,private,M1,tok-blaise",
        "manager_id,name,email,backup_manager_id,timezone\n"
        "M1,Alice Martin,alice@bank.test,M2,Europe/Paris\n"
        "M2,Bruno Costa,bruno@bank.test,,Europe/Lisbon\n"
        "LEAD,Lena Schmidt,lena@bank.test,,Europe/Berlin")
    settings = settings_for(tmp_path, kafka_bootstrap, unique_name, registry,
                            policy_path=tmp_path / "alerting.yaml", escalation_interval_seconds=0.5,
                            smtp={"host": "127.0.0.1", "port": smtp_sink.port, "from_address": "cardmon@bank.test"})
    monitor = MonitorApp(settings, metrics_registry=CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    sent_at: dict[str, float] = {}
    try:
        # Fraud declines: high severity, not an outage class (no storm-control wait).
        await send(kafka_bootstrap, settings.kafka.topic,
                   [event("ev-ada", card_ref="tok-ada", response_code="59"),
                    event("ev-blaise", card_ref="tok-blaise", response_code="59", terminal_id="ATM00043")])
        await wait_until(lambda: len(smtp_sink.messages()) >= 2, timeout=30, what="both alerts to Alice")
        recorded = time.monotonic()
        alerts = {a.customer_id: a.alert_id for a in monitor.store.list_alerts()}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api.port}") as client:
            answer = await client.post(f"/alerts/{alerts['C1']}/ack", json={"by": "M1", "note": "calling Ada"},
                                       headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert answer.status_code == 200 and answer.json()["state"] == "acknowledged"

        def arrived(address: str) -> bool:
            if any(address in to for to, _ in smtp_sink.messages()):
                sent_at.setdefault(address, time.monotonic() - recorded)
                return True
            return False

        await wait_until(lambda: arrived("bruno@bank.test"), timeout=20, what="the backup's escalation")
        await wait_until(lambda: arrived("lena@bank.test"), timeout=20, what="the team lead's escalation")
        await asyncio.sleep(1.5)  # anything more would arrive now
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    to = [recipients[0] for recipients, _ in smtp_sink.messages()]
    assert sorted(to) == ["alice@bank.test", "alice@bank.test", "bruno@bank.test", "lena@bank.test"]
    escalated = [m for _, m in smtp_sink.messages() if "ESCALATED" in str(m["Subject"])]
    assert len(escalated) == 2 and all("Blaise Pascal" in str(m["Subject"]) for m in escalated)
    # On time: each step taken at its delay after the alert was recorded (the job runs every 0.5 s).
    with AlertStore(tmp_path / "alerts.db") as store:
        created = store.get_alert(alerts["C2"]).created_at  # type: ignore[union-attr]
        steps = [(h.at - created).total_seconds() for h in store.history(alerts["C2"])
                 if h.action == "escalated"]
        acked = [h.action for h in store.history(alerts["C1"])]
    assert len(steps) == 2 and 3.0 <= steps[0] < 4.5 and 6.0 <= steps[1] < 7.5, steps
    assert "escalated" not in acked and "acknowledged" in acked
    assert sent_at["bruno@bank.test"] < sent_at["lena@bank.test"]
