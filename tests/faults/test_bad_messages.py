"""One bad message is dead-lettered alone; every good event around it is processed and alerted."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import psycopg
import pytest
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from monitor.alerts.store import AlertStore
from monitor.config import KafkaSettings
from monitor.kafka.clients import ensure_topics
from monitor.kafka.dead_letters import HEADER_MAX_BYTES, VALUE_MAX_BYTES
from monitor.metrics import PipelineMetrics
from monitor.pipeline.consumer import TransactionConsumer
from monitor.testing.fixtures import kafka_settings, wait_until
from tests.faults.support import processor, running, sample
from tests.helpers import encode, event, read_topic
from tests.postgres import PostgresServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _settings(bootstrap: str, name: str) -> KafkaSettings:
    return kafka_settings(bootstrap, name, batch_timeout_ms=100)


def _vip_failure(event_id: str, **fields: Any) -> bytes:
    return encode(event(event_id, customer_id="C-VIP", response_code="91", **fields))


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Send with librdkafka, one key: one partition, in order."""
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 2_000_000,
                         "linger.ms": 50})
    for value in values:
        producer.produce(topic, value=value, key=b"ATM00042")
    assert producer.flush(15) == 0


def _stored_event_ids(store: AlertStore) -> list[str]:
    return sorted(e.event_id for alert in store.list_alerts() for e in store.alert_events(alert.alert_id))


async def _consume(settings: KafkaSettings, tmp_path: Path, store: AlertStore,
                   count: int) -> tuple[TransactionConsumer, CollectorRegistry]:
    """Run a consumer over ``count`` messages (valid or not) and stop it."""
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    consumer = TransactionConsumer(settings, processor=processor(tmp_path, metrics), metrics=metrics,
                                   record_failures=lambda f, _i: asyncio.to_thread(store.record, f))
    async with running(consumer):
        await wait_until(lambda: sample(registry, "cardmon_events_consumed_total") >= count,
                         timeout=60, what=f"{count} messages consumed")
        await asyncio.sleep(0.5)  # a batch handled twice would show up here
    assert sample(registry, "cardmon_events_consumed_total") == count
    return consumer, registry


async def test_a_700_kb_bad_message_is_dead_lettered_bounded_and_its_neighbours_alert(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """A 700 KB string in an enum field: one bounded dead letter, no retry, the 10 events around it processed and 4 VIP failures alerted."""
    settings = _settings(kafka_bootstrap, unique_name)
    await ensure_topics(settings, partitions=1)
    huge = _vip_failure("huge", channel="X" * 700_000)
    stream = [encode(event("ok-1")), _vip_failure("vip-1"), encode(event("ok-2")), _vip_failure("vip-2"),
              encode(event("ok-3")), huge, encode(event("ok-4")), _vip_failure("vip-3"),
              encode(event("ok-5")), _vip_failure("vip-4"), encode(event("ok-6"))]
    _produce(kafka_bootstrap, settings.topic, stream)
    with AlertStore(tmp_path / "alerts.db") as store:
        consumer, registry = await _consume(settings, tmp_path, store, len(stream))
        assert _stored_event_ids(store) == ["vip-1", "vip-2", "vip-3", "vip-4"]
    assert consumer.events == len(stream) - 1
    (dead,) = await read_topic(kafka_bootstrap, settings.dead_letter_topic, expected=1)
    headers = dict(dead.headers)
    assert headers["cardmon-reason"] == b"invalid_field"
    assert len(headers["cardmon-detail"]) <= HEADER_MAX_BYTES
    assert int(headers["cardmon-truncated-from-bytes"]) == len(huge)
    assert len(dead.value) == VALUE_MAX_BYTES and huge.startswith(dead.value)
    assert int(headers["cardmon-source-offset"]) == stream.index(huge)
    assert sample(registry, "cardmon_dead_letters_total", reason="invalid_field") == 1
    assert sample(registry, "cardmon_consumer_retries_total", topic=settings.topic,
                  step="dead_letter") == 0


def _schema(url: str) -> str:
    found = re.search(r"search_path=(\w+)", unquote(url))
    assert found is not None, "the test store URL names its schema"
    return found.group(1)


async def test_a_nul_card_ref_on_postgresql_is_dead_lettered_and_the_rest_stored(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path, postgres: PostgresServer) -> None:
    """A VIP failure whose card_ref holds a NUL (PostgreSQL refuses it): that message is dead-lettered, the 6 VIP failures and 4 events around it are stored."""
    settings = _settings(kafka_bootstrap, unique_name)
    await ensure_topics(settings, partitions=1)
    nul = _vip_failure("nul-card", card_ref="tok\x00vip")
    stream = [_vip_failure("vip-1"), encode(event("ok-1")), _vip_failure("vip-2"), _vip_failure("vip-3"),
              nul, _vip_failure("vip-4"), encode(event("ok-2")), _vip_failure("vip-5"),
              encode(event("ok-3")), _vip_failure("vip-6"), encode(event("ok-4"))]
    _produce(kafka_bootstrap, settings.topic, stream)
    with AlertStore(postgres.new_store_url()) as store:
        _, registry = await _consume(settings, tmp_path, store, len(stream))
        assert _stored_event_ids(store) == [f"vip-{n}" for n in range(1, 7)]
    (dead,) = await read_topic(kafka_bootstrap, settings.dead_letter_topic, expected=1)
    headers = dict(dead.headers)
    # Whichever layer refuses it (the store today, the decoder once control characters are
    # refused there), it is dead-lettered alone, with its offset.
    assert int(headers["cardmon-source-offset"]) == stream.index(nul)
    assert dead.value == nul
    assert sum(sample(registry, "cardmon_dead_letters_total", reason=r)
               for r in ("store_rejected", "invalid_field")) == 1


async def test_a_row_the_database_refuses_is_isolated_by_bisection(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path, postgres: PostgresServer) -> None:
    """A CHECK constraint refusing one terminal ID: only its message is dead-lettered (store_rejected, constraint named), the other 11 VIP failures are stored."""
    settings = _settings(kafka_bootstrap, unique_name)
    await ensure_topics(settings, partitions=1)
    url = postgres.new_store_url()
    with AlertStore(url) as store:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE {_schema(url)}.alert_events ADD CONSTRAINT "
                         "no_quarantined_terminal CHECK (terminal_id <> 'ATMBAD01')")
        stream = [_vip_failure(f"vip-{n}", terminal_id="ATMBAD01" if n == 7 else f"ATM{n:05d}")
                  for n in range(12)]
        stream.insert(3, encode(event("ok-1")))
        _produce(kafka_bootstrap, settings.topic, stream)
        _, registry = await _consume(settings, tmp_path, store, len(stream))
        assert _stored_event_ids(store) == sorted(f"vip-{n}" for n in range(12) if n != 7)
    (dead,) = await read_topic(kafka_bootstrap, settings.dead_letter_topic, expected=1)
    headers = dict(dead.headers)
    assert headers["cardmon-reason"] == b"store_rejected"
    assert b"CheckViolation" in headers["cardmon-detail"]
    assert b"no_quarantined_terminal" in headers["cardmon-detail"]
    assert b"C-VIP" not in headers["cardmon-detail"], "the database's row text is never quoted"
    assert int(headers["cardmon-source-offset"]) == 8  # vip-7, after the inserted ok-1
    assert sample(registry, "cardmon_dead_letters_total", reason="store_rejected") == 1
    assert sample(registry, "cardmon_events_rejected_total", reason="store_rejected") == 1
