"""The decode pool: big batches decoded in a child process, exactly as in-process, never at any cost."""

from __future__ import annotations

import asyncio
import atexit
import logging
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from polars.testing import assert_frame_equal
from prometheus_client import CollectorRegistry

from monitor.alerts.store import AlertStore
from monitor.config import KafkaSettings
from monitor.faults import Stopping
from monitor.kafka.clients import ensure_topics
from monitor.metrics import PipelineMetrics
from monitor.pipeline.consumer import TransactionConsumer
from monitor.pipeline.decode_pool import DecodePool, _child_init
from monitor.pipeline.decoder import REFERENCE_BATCH_MAX, DecodedFrame, decode_frame
from monitor.testing.fixtures import kafka_settings, wait_until
from tests.helpers import encode, event, read_topic
from tests.pipeline.test_consumer import BAD, RAW_PAN, _processor

PAN = "4111111111111111"


def mixed_batch(size: int = 200) -> list[bytes | None]:
    """Valid events with malformed JSON, a tombstone, a raw PAN and white space to sanitise among them."""
    values: list[bytes | None] = [encode(event(f"e-{n}", customer_id=f"C-{n % 7}")) for n in range(size)]
    values[3] = encode(event("e-3"))[:30]  # malformed JSON
    values[10] = None  # tombstone
    values[17] = encode(event("raw-pan", pan=PAN, response_code="05"))
    values[25] = encode(event("spaces", city="  Lyon \t  Part-Dieu ", merchant_name="CAFE\u00a0 DU  PORT"))
    values[40] = encode(event("wrong-type", amount_minor="12.50"))
    return values


def assert_same(child: DecodedFrame, here: DecodedFrame) -> None:
    """Frame, indices, rejections and sanitised counts are all equal."""
    assert_frame_equal(child.frame, here.frame)
    assert child.indices == here.indices
    assert child.rejections == here.rejections
    assert child.sanitised == here.sanitised


@pytest.fixture
async def pool() -> AsyncIterator[DecodePool]:
    """A one-child pool, closed after the test."""
    decode_pool = DecodePool(1, max_breaks=2)
    yield decode_pool
    decode_pool.close()


async def ready(decode_pool: DecodePool) -> list[int]:
    """Start ``decode_pool`` with a first big batch and wait for its child; its process IDs."""
    assert decode_pool.submit(mixed_batch()) is None  # the first big batch starts it, decoded in-process
    await wait_until(lambda: decode_pool.ready, timeout=60, what="the decode child to start")
    return decode_pool.child_pids()


def alive(pid: int) -> bool:
    """Whether a process with this ID exists (a zombie counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_the_child_decodes_a_mixed_batch_exactly_as_the_main_process(pool: DecodePool) -> None:
    """A batch of valid, malformed, tombstone, raw-PAN and white-space messages gives the same DecodedFrame in the child."""
    await ready(pool)
    values = mixed_batch()
    here = decode_frame(values)
    pending = pool.submit(values)
    assert pending is not None
    child = await pool.result(pending)
    assert child is not None and pool.decoded == 1
    assert_same(child, here)
    assert {r.reason for r in here.rejections} >= {"invalid_json", "raw_pan", "invalid_field"}
    assert any("tombstone" in r.detail for r in here.rejections)
    assert here.sanitised  # the white space was cleaned, and counted the same way


async def test_small_batches_and_setting_zero_start_no_process() -> None:
    """Batches of at most REFERENCE_BATCH_MAX messages, or any batch with 0 processes, are decoded in-process and start nothing."""
    small, off = DecodePool(1), DecodePool(0)
    assert small.submit(mixed_batch(REFERENCE_BATCH_MAX)) is None
    assert off.submit(mixed_batch()) is None
    assert small.child_pids() == [] and off.child_pids() == [] and off.off


async def test_a_killed_child_loses_no_batch_and_the_pool_comes_back(pool: DecodePool) -> None:
    """Killing the child mid-decode gives None (decode in-process), a warning, and a new child for later batches."""
    [first] = await ready(pool)
    values = mixed_batch(20_000)  # long enough to be killed in the middle
    pending = pool.submit(values)
    assert pending is not None
    os.kill(first, signal.SIGKILL)
    assert await pool.result(pending) is None
    assert pool.fallbacks == 1 and not pool.off
    await wait_until(lambda: pool.ready, timeout=60, what="a new decode child")
    [second] = pool.child_pids()
    assert second != first
    again = pool.submit(mixed_batch())
    assert again is not None
    child = await pool.result(again)
    assert child is not None
    assert_same(child, decode_frame(mixed_batch()))


async def test_a_child_that_does_not_answer_is_replaced(caplog: pytest.LogCaptureFixture) -> None:
    """A stopped child (no answer within the timeout) gives None, is killed, and a new child takes over."""
    decode_pool = DecodePool(1, result_timeout=0.5)
    try:
        [first] = await ready(decode_pool)
        os.kill(first, signal.SIGSTOP)
        pending = decode_pool.submit(mixed_batch())
        assert pending is not None
        with caplog.at_level(logging.WARNING, logger="monitor.pipeline.decode_pool"):
            assert await decode_pool.result(pending) is None
        assert "no frame within 0.5 s" in caplog.text
        assert PAN not in caplog.text and "Lyon" not in caplog.text  # never the batch's content
        await wait_until(lambda: not alive(first) or _zombie(first), what="the stopped child killed")
        await wait_until(lambda: decode_pool.ready, timeout=60, what="a new decode child")
    finally:
        decode_pool.close()


def _zombie(pid: int) -> bool:
    """Whether ``pid`` is a zombie (dead, not yet reaped by its parent)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def test_too_many_breaks_keep_decoding_in_process(pool: DecodePool,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """After max_breaks broken children the pool stays off, says so once, and every batch is decoded in-process."""
    await ready(pool)
    with caplog.at_level(logging.WARNING, logger="monitor.pipeline.decode_pool"):
        for _ in range(2):
            await wait_until(lambda: pool.ready, timeout=60, what="the decode child")
            [pid] = pool.child_pids()
            pending = pool.submit(mixed_batch(20_000))
            assert pending is not None
            os.kill(pid, signal.SIGKILL)
            assert await pool.result(pending) is None
    assert pool.off and not pool.ready and pool.child_pids() == []
    assert pool.submit(mixed_batch()) is None
    assert caplog.text.count("decoding in-process from now on") == 1


async def test_stop_ends_the_wait_for_a_frame(pool: DecodePool) -> None:
    """The stop event set while a batch is in the child raises Stopping at once (the batch is left uncommitted)."""
    await ready(pool)
    pending = pool.submit(mixed_batch(20_000))
    assert pending is not None
    stop = asyncio.Event()
    stop.set()
    with pytest.raises(Stopping):
        await pool.result(pending, stop=stop)


async def test_close_leaves_no_child_process() -> None:
    """After close the child has exited and been reaped; a later big batch starts a new one."""
    decode_pool = DecodePool(1)
    try:
        [pid] = await ready(decode_pool)
        decode_pool.close()
        assert not alive(pid)
        assert decode_pool.child_pids() == []
        [again] = await ready(decode_pool)
        assert again != pid
    finally:
        decode_pool.close()
    assert not alive(again)


async def test_close_kills_a_child_that_does_not_exit() -> None:
    """A stopped child does not hold close up beyond its timeout: it is killed and reaped."""
    decode_pool = DecodePool(1)
    [pid] = await ready(decode_pool)
    os.kill(pid, signal.SIGSTOP)
    decode_pool.close(timeout=0.5)
    assert not alive(pid)


def _mark(path: str) -> None:
    Path(path).write_text("torn down")


def _child_with_an_exit_handler(path: str) -> None:
    """A child with an exit handler of its own (like a library's), then set up as the pool's."""
    atexit.register(_mark, path)
    _child_init()


def test_the_child_exits_without_the_interpreters_teardown(tmp_path: Path) -> None:
    """A child set up as the pool's exits with code 0 before any earlier exit handler or teardown runs (the teardown took over 10 s at niceness +10 under load)."""
    marker = tmp_path / "marker"
    child = multiprocessing.get_context("spawn").Process(target=_child_with_an_exit_handler,
                                                         args=(str(marker),))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert not marker.exists()


async def _consume_all(settings: KafkaSettings, tmp_path: Path, stream: list[bytes]
                       ) -> tuple[int, list[tuple[str, list[str]]], list[str], DecodePool, list[int]]:
    """Run a consumer over ``stream`` (its decode child started first); what it produced.

    Returns:
        (valid events, each alert's ID and event IDs, dead-letter reasons, the consumer's
        decode pool, the pool's child process IDs while it ran).
    """
    await ensure_topics(settings, partitions=2)
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    with AlertStore(tmp_path / f"alerts-{settings.decode_processes}.db") as store:
        consumer = TransactionConsumer(settings, processor=_processor(tmp_path, metrics), metrics=metrics,
                                       record_failures=lambda f, _i: asyncio.to_thread(store.record, f))
        if settings.decode_processes:  # the child ready before the first batch: every big batch goes to it
            await ready(consumer.decode_pool)
        pids = consumer.decode_pool.child_pids()
        producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
        for position, value in enumerate(stream):
            producer.produce(settings.topic, value=value, key=f"T{position % 5}".encode())
        assert producer.flush(10) == 0
        await consumer.start()
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        try:
            await wait_until(lambda: (registry.get_sample_value("cardmon_events_consumed_total") or 0)
                             >= len(stream), what="every message consumed")
        finally:
            stop.set()
            await task
            await consumer.stop()
        alerts = sorted((alert.alert_id, sorted(e.event_id for e in store.alert_events(alert.alert_id)))
                        for alert in store.list_alerts())
    dead = await read_topic(settings.bootstrap_servers, settings.dead_letter_topic,
                            expected=sum(1 for value in stream if value in BAD.values() or value == RAW_PAN))
    reasons = sorted(dict(record.headers)["cardmon-reason"].decode() for record in dead)
    return consumer.events, alerts, reasons, consumer.decode_pool, pids


async def test_the_consumer_gives_the_same_alerts_with_and_without_the_decode_process(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """Big batches through the real broker give the same events, alerts and dead letters with decode_processes 0 and 1, and stop leaves no child."""
    stream: list[bytes] = []
    for n in range(600):
        if n % 50 == 7:
            stream.append(list(BAD.values())[(n // 50) % len(BAD)])
        elif n % 97 == 3:
            stream.append(RAW_PAN)
        elif n % 9 == 0:
            stream.append(encode(event(f"vip-{n}", customer_id="C-VIP", response_code="91",
                                       city="  Lyon   Part-Dieu ")))
        else:
            stream.append(encode(event(f"ok-{n}")))
    runs = {}
    for processes in (0, 1):
        settings = kafka_settings(kafka_bootstrap, f"{unique_name}-{processes}", batch_timeout_ms=100,
                                  batch_max_records=200, decode_processes=processes)
        runs[processes] = await _consume_all(settings, tmp_path, stream)
    (events_0, alerts_0, reasons_0, _, _), (events_1, alerts_1, reasons_1, pool, pids) = runs[0], runs[1]
    assert pool.decoded >= 1 and pool.fallbacks == 0  # batches were decoded in the child
    assert events_1 == events_0 and alerts_1 == alerts_0 and reasons_1 == reasons_0
    assert alerts_0 and "raw_pan" in reasons_0
    assert pids and not any(alive(pid) for pid in pids)  # stop closed the pool
    assert pool.child_pids() == []
