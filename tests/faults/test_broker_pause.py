"""The broker frozen for 60 s (SIGSTOP, then SIGCONT): the monitor and the simulator ride it out."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.app import MonitorApp
from monitor.config import isolated_settings
from monitor.testing.broker import EmbeddedBroker, free_port
from monitor.testing.fixtures import wait_until
from simulators.producer import produce
from tests.faults.support import sample
from tests.helpers import event, read_topic, write_registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

PAUSE_SECONDS = 60
CLIENTS = 6  # one VIP failure each: one alert each, three before the pause, three during it
NORMAL = 20  # approved transactions per phase


def _phase(phase: int) -> list[dict[str, object]]:
    """Three VIP failures (clients of this phase) among NORMAL approved transactions."""
    stamp = datetime.now(UTC).replace(microsecond=0).isoformat()
    events = [event(f"p{phase}-ok-{n}", terminal_id=f"ATM{n % 5:05d}", occurred_at=stamp)
              for n in range(NORMAL)]
    for n in range(3):
        client = phase * 3 + n + 1
        events.insert(n * 7, event(f"p{phase}-vip-{client}", customer_id=f"C-{client}",
                                   response_code="91", terminal_id=f"ATM{n:05d}", occurred_at=stamp))
    return events


async def test_a_60_s_broker_freeze_loses_nothing_and_alerts_nobody_twice(
        unique_name: str, tmp_path: Path) -> None:
    """Tansu SIGSTOPped 60 s while the simulator sends: afterwards every event is processed and each of 6 alerts delivered once."""
    customers, managers = write_registry(
        tmp_path / "registry",
        "customer_id,name,tier,manager_id,card_refs\n"
        + "\n".join(f"C-{n},Client {n},private,M-1," for n in range(1, CLIENTS + 1)),
        "manager_id,name,email,phone,webhook_url,backup_manager_id,timezone\nM-1,Bo Chan,,,,,UTC")
    jsonl = tmp_path / "alerts.jsonl"
    with EmbeddedBroker() as broker:
        assert broker.pid is not None
        settings = isolated_settings(
            kafka={"bootstrap_servers": broker.bootstrap_servers, "topic": f"tx-{unique_name}",
                   "dead_letter_topic": f"dlq-{unique_name}", "group_id": f"g-{unique_name}",
                   "batch_timeout_ms": 100},
            registry={"customers_path": customers, "managers_path": managers},
            alerting={"store_path": tmp_path / "alerts.db", "sinks": ["jsonl"], "jsonl_path": jsonl,
                      "poll_interval_seconds": 0.1},
            health={"status_topic": f"st-{unique_name}",
                    "status_dead_letter_topic": f"st-dlq-{unique_name}"},
            metrics={"port": free_port()},
            api={"enabled": False},  # its fixed default port may be taken on a shared machine
        )
        topic = settings.kafka.topic
        registry = CollectorRegistry()
        app = MonitorApp(settings, metrics_registry=registry)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))

        def delivered() -> list[str]:
            lines = jsonl.read_text(encoding="utf-8").splitlines() if jsonl.is_file() else []
            return [json.loads(line)["alert_id"] for line in lines]

        try:
            assert await produce(_phase(0), bootstrap_servers=broker.bootstrap_servers, topic=topic) \
                == NORMAL + 3
            await wait_until(lambda: app.consumer.events == NORMAL + 3 and len(delivered()) == 3,
                             timeout=60, what="phase 0 processed and alerted")
            await asyncio.sleep(1)  # its offsets committed: nothing in flight at the freeze

            os.kill(broker.pid, signal.SIGSTOP)
            frozen_at = time.monotonic()
            try:
                sending = asyncio.create_task(produce(
                    _phase(1), bootstrap_servers=broker.bootstrap_servers, topic=topic))
                await asyncio.sleep(PAUSE_SECONDS)
                assert not sending.done(), "the simulator gave up during the freeze"
            finally:
                os.kill(broker.pid, signal.SIGCONT)
            thawed_at = time.monotonic()
            assert thawed_at - frozen_at >= PAUSE_SECONDS
            assert await asyncio.wait_for(sending, timeout=120) == NORMAL + 3

            # What is on the topic now (a delivery that timed out in the freeze may have been
            # written and sent again: the simulator is at-least-once) is what must be consumed.
            on_topic = await read_topic(broker.bootstrap_servers, topic, expected=2 * (NORMAL + 3))
            ids = {json.loads(r.value)["event_id"] for r in on_topic}
            assert len(ids) == 2 * (NORMAL + 3), "an event of the freeze is lost"
            await wait_until(lambda: sample(registry, "cardmon_events_consumed_total") >= len(on_topic)
                             and len(delivered()) >= CLIENTS, timeout=120,
                             what="every event after the freeze")
            resumed_in = time.monotonic() - thawed_at
            await asyncio.sleep(2)  # anything processed or delivered twice would show up here
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=60)
    assert sample(registry, "cardmon_events_consumed_total") == len(on_topic)
    assert app.store_summary == CLIENTS
    assert sorted(delivered()) == sorted(set(delivered())) and len(delivered()) == CLIENTS
    assert resumed_in < 120
