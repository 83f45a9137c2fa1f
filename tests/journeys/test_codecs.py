"""Every Kafka compression codec, from a foreign producer and our own, on both topics of a running monitor."""

from __future__ import annotations

import asyncio
import importlib.metadata
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.codec import has_lz4, has_snappy, has_zstd
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from monitor.alerts.store import AlertStore
from monitor.app import MonitorApp
from monitor.config import isolated_settings
from monitor.kafka.batches import fetch_batches
from monitor.kafka.clients import ensure_topics
from monitor.testing.broker import free_port
from monitor.testing.fixtures import wait_until
from tests.helpers import encode, event, write_registry

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
PARTITIONS = 3
#: Per codec and producer: transactions (of which VIP failures) and device status events.
TRANSACTIONS, VIP_FAILURES, STATUSES = 30, 3, 12


def test_every_codec_is_installed_with_cardmon() -> None:
    """aiokafka can decode snappy, lz4 and zstd batches: cardmon's own dependencies bring cramjam."""
    assert has_snappy() and has_lz4() and has_zstd()
    requires = importlib.metadata.requires("cardmon") or []
    assert any(r.startswith("aiokafka[") and all(c in r for c in ("snappy", "lz4", "zstd"))
               for r in requires), requires


#: One event time for the whole test: the VIP failures fall in one alert window.
STAMP = datetime.now(UTC).replace(microsecond=0).isoformat()


def _transactions(prefix: str) -> list[tuple[bytes, bytes]]:
    """(key, value) of TRANSACTIONS events on four terminals, VIP_FAILURES of them VIP failures."""
    out = []
    for n in range(TRANSACTIONS):
        terminal = f"ATM{n % 4:05d}"
        fields: dict[str, Any] = {"terminal_id": terminal, "occurred_at": STAMP}
        if n < VIP_FAILURES:
            fields |= {"customer_id": "C-VIP", "response_code": "91"}
        out.append((terminal.encode(), encode(event(f"{prefix}-tx-{n}", **fields))))
    return out


def _statuses(prefix: str) -> list[tuple[bytes, bytes]]:
    """(key, value) of STATUSES device status events on four terminals."""
    return [(f"ATM{n % 4:05d}".encode(), msgspec.json.encode({
        "event_id": f"{prefix}-st-{n}", "occurred_at": STAMP, "terminal_id": f"ATM{n % 4:05d}",
        "component": "cassette", "state": ("ok", "low")[n % 2]})) for n in range(STATUSES)]


async def _codecs_on_broker(bootstrap: str, topic: str) -> set[str]:
    """Every codec of every record batch stored in ``topic`` (read raw from the broker)."""
    seen: set[str] = set()
    for partition in range(PARTITIONS):
        offset = 0
        while batches := await fetch_batches({"bootstrap_servers": bootstrap},
                                             TopicPartition(topic, partition), offset):
            assert all(b.readable for b in batches), batches
            seen |= {b.codec for b in batches}
            offset = batches[-1].next_offset
    return seen


@pytest.mark.integration
@pytest.mark.timeout(180)
async def test_a_running_monitor_reads_every_codec_on_both_topics(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """librdkafka and aiokafka batches in none, gzip, snappy, lz4 and zstd: every event of both topics is processed."""
    customers, managers = write_registry(
        tmp_path / "registry", "customer_id,name,tier,manager_id,card_refs\nC-VIP,Ann Lee,private,M-1,",
        "manager_id,name,email,phone,webhook_url,backup_manager_id,timezone\nM-1,Bo Chan,,,,,UTC")
    settings = isolated_settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "topic": f"tx-{unique_name}",
               "dead_letter_topic": f"dlq-{unique_name}", "group_id": f"g-{unique_name}",
               "batch_timeout_ms": 100},
        registry={"customers_path": customers, "managers_path": managers},
        alerting={"store_path": tmp_path / "alerts.db"},
        health={"status_topic": f"st-{unique_name}", "status_dead_letter_topic": f"st-dlq-{unique_name}"},
        metrics={"port": free_port()},
        api={"enabled": False},  # its fixed default port may be taken on a shared machine
    )
    topics = (settings.kafka.topic, settings.health.status_topic)
    await ensure_topics(settings.kafka, partitions=PARTITIONS,
                        topics=[*topics, settings.kafka.dead_letter_topic,
                                settings.health.status_dead_letter_topic])
    for codec in CODECS:
        # The foreign producer: librdkafka, as a bank's switch or a Java service would batch.
        foreign = Producer({"bootstrap.servers": kafka_bootstrap, "compression.type": codec,
                            "linger.ms": 20})
        for key, value in _transactions(f"rd-{codec}"):
            foreign.produce(topics[0], value=value, key=key)
        for key, value in _statuses(f"rd-{codec}"):
            foreign.produce(topics[1], value=value, key=key)
        assert foreign.flush(15) == 0
        ours = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=20,
                                compression_type=None if codec == "none" else codec)
        await ours.start()
        try:
            for key, value in _transactions(f"aio-{codec}"):
                await ours.send(topics[0], value=value, key=key)
            for key, value in _statuses(f"aio-{codec}"):
                await ours.send(topics[1], value=value, key=key)
            await ours.flush()
        finally:
            await ours.stop()
    for topic in topics:
        assert await _codecs_on_broker(kafka_bootstrap, topic) == set(CODECS), topic

    registry = CollectorRegistry()
    app = MonitorApp(settings, metrics_registry=registry)
    assert app.health.status is not None
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    producers = 2 * len(CODECS)
    try:
        await wait_until(lambda: app.consumer.events >= producers * TRANSACTIONS
                         and app.health.status is not None
                         and app.health.status.events >= producers * STATUSES,
                         timeout=90, what="every event of both topics")
        await asyncio.sleep(0.5)  # anything counted twice would show up here
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    assert app.consumer.events == producers * TRANSACTIONS
    assert app.health.status.events == producers * STATUSES
    assert not any(registry.get_sample_value("cardmon_partition_read_errors_total",
                                             {"topic": topic, "partition": str(p)})
                   for topic in topics for p in range(PARTITIONS))
    assert not any(registry.get_sample_value("cardmon_dead_letters_total", {"reason": r})
                   for r in ("invalid_json", "invalid_utf8", "processing_error"))
    assert app.store_summary == 1, "the VIP client's failures make one grouped alert"
    with AlertStore(tmp_path / "alerts.db") as store:
        (alert,) = store.list_alerts()
        assert alert.event_count == producers * VIP_FAILURES
