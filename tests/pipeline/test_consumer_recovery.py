"""The recovery watch through the real consumer and broker: recovered and abandoned."""

from __future__ import annotations

import asyncio
from pathlib import Path

from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from monitor.alerts.store import AlertStore
from monitor.kafka.clients import ensure_topics
from monitor.metrics import PipelineMetrics, RecoveryMetrics
from monitor.paths import rules_path
from monitor.pipeline.classify import ResponseCodeTable
from monitor.pipeline.consumer import TransactionConsumer
from monitor.pipeline.processor import BatchProcessor
from monitor.pipeline.recovery import RecoveryWatch
from monitor.pipeline.selection import AlertPolicy
from monitor.pipeline.vips import RegistryLoader
from monitor.pipeline.watermark import EventClock
from monitor.testing.fixtures import kafka_settings, wait_until
from tests.helpers import encode, event, write_registry

# (event ID, key/terminal, customer, response code, occurred_at): the approval comes first
# on its partition, and traffic 40 minutes later moves the watermark past both deadlines.
STREAM = [
    ("retry-ok", "ATM00077", "C-BACK", "00", "2026-03-02T10:18:00+00:00"),
    ("fail-back", "ATM00042", "C-BACK", "91", "2026-03-02T10:15:00+00:00"),
    ("fail-gone", "ATM00042", "C-GONE", "91", "2026-03-02T10:15:30+00:00"),
    ("pos-ok", "POS00001", "C-GONE", "00", "2026-03-02T10:16:00+00:00"),  # another kind
    *[(f"later-{n}", f"ATM0010{n}", None, "00", "2026-03-02T10:55:00+00:00") for n in range(6)],
]


async def test_the_consumer_decides_recovered_and_abandoned_across_partitions(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    """A retry at another ATM is recovered; no same-kind approval by the deadline is abandoned."""
    settings = kafka_settings(kafka_bootstrap, unique_name, batch_timeout_ms=100)
    await ensure_topics(settings, partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for event_id, terminal, customer, code, at in STREAM:
        fields = {"terminal_id": terminal, "response_code": code, "occurred_at": at}
        if terminal.startswith("POS"):
            fields |= {"channel": "POS", "txn_type": "purchase", "entry_mode": "chip"}
        if customer is not None:
            fields["customer_id"] = customer
        producer.produce(
            settings.topic, value=encode(event(event_id, **fields)), key=terminal.encode()
        )
    assert producer.flush(10) == 0

    customers, managers = write_registry(
        tmp_path / "registry",
        "customer_id,name,tier,manager_id,card_refs\nC-BACK,Hélène Martin,private,M-1,\n"
        "C-GONE,Jean Valjean,private,M-1,",
        "manager_id,name,email,phone,webhook_url,backup_manager_id,timezone\n"
        "M-1,Paul Durand,paul@bank.test,,,,Europe/Paris",
    )
    loader = RegistryLoader(customers, managers)
    loader.load()
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    clock = EventClock(allowed_lateness_seconds=10)
    processor = BatchProcessor(
        codes=ResponseCodeTable.load(rules_path("response_codes.yaml")),
        policy=AlertPolicy.load(rules_path("alerting.yaml")),
        registry=loader,
        metrics=metrics,
        clock=clock,
    )
    with AlertStore(tmp_path / "alerts.db") as store:
        watch = RecoveryWatch(
            store,
            watermark=lambda: clock.watermark,
            lateness_seconds=10,
            metrics=RecoveryMetrics(registry),
        )
        consumer = TransactionConsumer(
            settings,
            processor=processor,
            metrics=metrics,
            recovery=watch,
            record_failures=lambda failures, _incidents: asyncio.to_thread(
                store.record, failures, recovery_window_seconds=1800
            ),
        )
        await consumer.start()
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))

        def decided(result: str) -> float:
            return (
                registry.get_sample_value(
                    "cardmon_vip_recoveries_total",
                    {"result": result, "outcome": "technical", "channel": "ATM"},
                )
                or 0
            )

        try:
            await wait_until(
                lambda: decided("recovered") + decided("abandoned") >= 2,
                what="both watches decided",
            )
        finally:
            stop.set()
            await task
            await consumer.stop()
        recoveries = {
            r.customer_id: r
            for r in store.recoveries_of([a.alert_id for a in store.list_alerts()]).values()
        }
    assert (decided("recovered"), decided("abandoned")) == (1, 1)
    back = recoveries["C-BACK"]
    assert (back.status, back.recovery_event_id, back.terminal_id, back.same_terminal) == (
        "recovered",
        "retry-ok",
        "ATM00077",
        False,
    )
    assert back.seconds_to_recovery == 180.0
    assert recoveries["C-GONE"].status == "abandoned"
    assert registry.get_sample_value("cardmon_vip_recovery_seconds_count") == 1
    assert registry.get_sample_value("cardmon_vip_recovery_seconds_bucket", {"le": "180.0"}) == 1
    assert registry.get_sample_value("cardmon_vip_recovery_seconds_bucket", {"le": "120.0"}) == 0


# The night Paris starts summer time (01:00 UTC): the failure in CET, two approvals at the
# same instant written in CEST and in UTC (at two ATMs, so maybe two partitions), traffic
# 47 minutes later.
DST_STREAM = [
    ("ok-b", "ATM00078", "C-DST", "00", "2026-03-29T03:05:00+02:00"),
    ("fail-dst", "ATM00042", "C-DST", "91", "2026-03-29T01:58:00+01:00"),
    ("ok-a", "ATM00077", "C-DST", "00", "2026-03-29T01:05:00Z"),
    *[(f"later-{n}", f"ATM0010{n}", None, "00", "2026-03-29T01:45:00+00:00") for n in range(6)],
]


async def test_offsets_across_a_dst_change_and_tied_approvals_decide_by_instant_then_event_id(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    """Events in CET, CEST and UTC match by instant; of two approvals at one instant the lower event ID wins."""
    settings = kafka_settings(kafka_bootstrap, unique_name, batch_timeout_ms=100)
    await ensure_topics(settings, partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for event_id, terminal, customer, code, at in DST_STREAM:
        fields = {"terminal_id": terminal, "response_code": code, "occurred_at": at}
        if customer is not None:
            fields["customer_id"] = customer
        producer.produce(settings.topic, value=encode(event(event_id, **fields)),
                         key=terminal.encode())
    assert producer.flush(10) == 0
    customers, managers = write_registry(
        tmp_path / "registry",
        "customer_id,name,tier,manager_id,card_refs\nC-DST,Hélène Martin,private,M-1,",
        "manager_id,name,email,phone,webhook_url,backup_manager_id,timezone\n"
        "M-1,Paul Durand,paul@bank.test,,,,Europe/Paris",
    )
    loader = RegistryLoader(customers, managers)
    loader.load()
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    clock = EventClock(allowed_lateness_seconds=10)
    processor = BatchProcessor(codes=ResponseCodeTable.load(rules_path("response_codes.yaml")),
                               policy=AlertPolicy.load(rules_path("alerting.yaml")),
                               registry=loader, metrics=metrics, clock=clock)
    with AlertStore(tmp_path / "alerts.db") as store:
        watch = RecoveryWatch(store, watermark=lambda: clock.watermark, lateness_seconds=10,
                              metrics=RecoveryMetrics(registry))
        consumer = TransactionConsumer(
            settings, processor=processor, metrics=metrics, recovery=watch,
            record_failures=lambda failures, _incidents: asyncio.to_thread(
                store.record, failures, recovery_window_seconds=1800))
        await consumer.start()
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        labels = {"result": "recovered", "outcome": "technical", "channel": "ATM"}
        try:
            await wait_until(
                lambda: (registry.get_sample_value("cardmon_vip_recoveries_total", labels) or 0) >= 1
                and clock.watermark is not None and clock.watermark.minute >= 30,
                what="the watch recovered and the watermark past the deadline")
        finally:
            stop.set()
            await task
            await consumer.stop()
        [recovery] = store.recoveries_of([a.alert_id for a in store.list_alerts()]).values()
    assert (recovery.status, recovery.recovery_event_id, recovery.terminal_id) == (
        "recovered", "ok-a", "ATM00077")
    assert recovery.seconds_to_recovery == 7 * 60
    assert registry.get_sample_value("cardmon_vip_recoveries_total", labels) == 1
