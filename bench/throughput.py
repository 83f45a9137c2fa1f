"""Throughput benchmark: a bare aiokafka consumer against the whole monitor, on one topic.

One run (``python -m bench.throughput``), in this order:

1. start the embedded broker (unless ``--bootstrap-servers``), create a fresh topic
   and its dead-letter topic, and produce ``events`` synthetic ATM/POS events with the
   demo faults as fast as the client can (:func:`simulators.producer.produce`);
2. **bare**: an ``AIOKafkaConsumer`` in a fresh group reads the topic from the start
   with ``getmany`` until it holds ``events`` messages, doing nothing with them;
3. **monitor**: a :class:`~monitor.app.MonitorApp` in a fresh group reads the same
   topic through the whole pipeline (decode, classify, VIP lookup, metrics, alert
   policy, SQLite alert store, dead-letter topic, offset commits, ``jsonl`` delivery);
4. **live**, once per ``--live-rate``: a fresh monitor on a fresh topic while a separate
   process produces events in real time through librdkafka (:mod:`bench.live_producer`),
   to measure the end-to-end alert latency and the rate the producer actually reached;
5. **scale** (only with ``--instances N``): the backlog on a topic of its own, through one
   monitor process and then through N in one consumer group, with a shared PostgreSQL
   store (:mod:`bench.instances`): the combined rate against one instance's.

Both rates are ``events / seconds`` with the clock started once the consumer holds its
partition assignment (the group join is excluded, the first fetch is included) and
stopped when the last message is in hand (bare) or its batch is committed (monitor).
The alert latency of one alert is ``sent_at`` of its ``jsonl`` delivery minus the
``occurred_at`` of its first event, which the live producer stamps with the time it
hands the event to its Kafka client (see ``bench/README.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import io
import itertools
import json
import math
import multiprocessing
import os
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaConsumer

from monitor.alerts.store import AlertStore
from monitor.app import MonitorApp
from monitor.config import (
    AlertingSettings,
    KafkaSettings,
    MetricsSettings,
    RegistrySettings,
    Settings,
    isolated_settings,
)
from monitor.kafka.clients import ensure_topics
from monitor.pipeline.decoder import REFERENCE_BATCH_MAX
from bench import live_producer
from bench.live_trace import LiveTrace, summary
from bench.instances import ScaleRun, postgres_store_urls, run_instances, scale_partitions
from monitor.testing.broker import EmbeddedBroker, free_port
from simulators.fleet import Fleet, build_fleet, write_registry
from simulators.producer import produce
from simulators.sources.synthetic import default_faults, synthetic_events

__all__ = ["BenchReport", "LivePhase", "bench_fleet", "bench_settings", "format_report", "main", "percentile",
           "run_benchmark"]

#: Same fetch bound per partition as the monitor's consumer (monitor/pipeline/consumer.py), so the
#: bare consumer is not handicapped by smaller fetches.
_MAX_PARTITION_FETCH_BYTES: Final = 4 * 1024 * 1024
#: Event-time rate of the backlog (events/s): 200,000 events span ~7 minutes of event
#: time, so failures of one client fall into one or two 10-minute alert windows.
_BACKLOG_EVENT_RATE: Final = 500.0
#: Alert grouping window of rules/alerting.yaml (seconds); the backlog starts on a boundary.
_ALERT_WINDOW_SECONDS: Final = 600
#: How long a phase may take before the benchmark gives up (seconds).
_PHASE_TIMEOUT_SECONDS: Final = 600.0
_POLL_SECONDS: Final = 0.005


@dataclass(slots=True)
class BenchReport:
    """What one run measured. Rates are events per second, durations seconds.

    Attributes:
        events: messages in the backlog topic.
        partitions: partitions of the topics.
        batch_max_records: ``getmany`` bound of both consumers.
        produce_seconds: time to produce the backlog.
        bare_consumed: messages the bare consumer read.
        bare_seconds: bare consumer time (assignment held -> last message in hand).
        bare_rate: ``bare_consumed / bare_seconds``.
        monitor_consumed: messages the monitor processed (valid events + rejections).
        monitor_seconds: monitor time (assignment held -> last batch committed).
        monitor_rate: ``monitor_consumed / monitor_seconds``.
        ratio: ``monitor_rate / bare_rate`` (the goal is >= 0.5).
        alerts_stored: alerts in the monitor's store after the backlog run.
        monitor_breakdown: seconds per part of the monitor run (see :func:`_instrument`).
        stage_us_per_event: the monitor's cost per stage in µs per event consumed: the
            batch processor's stages (:data:`monitor.pipeline.processor.STAGES`), then the
            alert store write and the offset commit (see :func:`_stage_costs`).
        cpu_seconds: CPU time of the monitor run: ``main process`` (every thread,
            ``time.process_time``, from the clock's start) and ``child processes`` (the
            decode pool's children, start-up included, reaped when the monitor stops;
            ``os.times``); ``decode child start-up (wall, not timed)``: how long the decode
            child took to start before the run.
        live: one :class:`LivePhase` per live rate asked for, in the order asked.
        scale: the scale phase's runs (one instance, then N), empty without ``--instances``.
        scale_ratio: N instances' combined rate / one instance's (``None`` without a scale phase).
    """

    events: int
    partitions: int
    batch_max_records: int
    produce_seconds: float = 0.0
    bare_consumed: int = 0
    bare_seconds: float = 0.0
    bare_rate: float = 0.0
    monitor_consumed: int = 0
    monitor_seconds: float = 0.0
    monitor_rate: float = 0.0
    ratio: float = 0.0
    alerts_stored: int = 0
    monitor_breakdown: dict[str, float] = field(default_factory=dict)
    stage_us_per_event: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    live: list[LivePhase] = field(default_factory=list)
    scale: list[ScaleRun] = field(default_factory=list)
    scale_ratio: float | None = None


@dataclass(slots=True)
class LivePhase:
    """What one live phase measured. Latencies in seconds, ``None`` if no alert was delivered.

    Attributes:
        target_rate: events/s asked of the producer.
        events: events produced (all acknowledged by the broker).
        rate: the rate reached: ``events`` / seconds from the first hand-over to the last.
        alerts: alerts delivered to the ``jsonl`` sink.
        latency_p50: median end-to-end alert latency (event hand-over -> delivered).
        latency_p99: its 99th percentile (the goal at 20,000 events/s is < 0.25 s).
        latency_max: worst end-to-end alert latency.
        store_latency_p50: median of alert ``created_at`` - first ``occurred_at``.
        delivery_latency_p50: median of ``sent_at`` - alert ``created_at``.
        store_latency_p99: 99th percentile of ``created_at`` - first ``occurred_at``.
        delivery_latency_p99: 99th percentile of ``sent_at`` - ``created_at``.
        batches: batches the monitor handled in the phase (mean size = ``events / batches``).
        trace: with ``--live-trace``, (name, text) lines summarising where records waited
            (:func:`bench.live_trace.summary`); empty otherwise.
    """

    target_rate: float
    events: int = 0
    rate: float = 0.0
    alerts: int = 0
    latency_p50: float | None = None
    latency_p99: float | None = None
    latency_max: float | None = None
    store_latency_p50: float | None = None
    delivery_latency_p50: float | None = None
    store_latency_p99: float | None = None
    delivery_latency_p99: float | None = None
    batches: int = 0
    trace: list[tuple[str, str]] = field(default_factory=list)


def bench_fleet(seed: int) -> Fleet:
    """The benchmark's fleet: 1,000 VIP clients among 20,000, so alerts are many, as in a bank."""
    return build_fleet(terminals=500, customers=20_000, vips=1_000, managers=25, seed=seed)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least ``q`` of them at or below it.

    Args:
        values: samples, any order.
        q: fraction in (0, 1].

    Returns:
        The percentile, or ``None`` for no samples.
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def bench_settings(bootstrap: str, topic: str, group: str, batch_max_records: int, work: Path,
                   registry: tuple[Path, Path]) -> Settings:
    """The settings of one benchmarked monitor: SQLite store and ``jsonl`` sink under ``work``.

    Args:
        bootstrap: broker address; topic, group: Kafka topic (its dead-letter topic is
            ``<topic>.dlq``) and consumer group; batch_max_records: ``getmany`` bound;
        work: folder of the alert store and ``alerts.jsonl``; registry: the customers'
            and managers' files (:func:`simulators.fleet.write_registry`).
    """
    # Isolated: an operator's CARDMON_* variables or cardmon.yaml must not reach the benchmark.
    return isolated_settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap, topic=topic, dead_letter_topic=f"{topic}.dlq",
                            group_id=group, batch_max_records=batch_max_records),
        registry=RegistrySettings(customers_path=registry[0], managers_path=registry[1]),
        alerting=AlertingSettings(store_path=work / "alerts.db", sinks=("jsonl",),
                                  jsonl_path=work / "alerts.jsonl"),
        metrics=MetricsSettings(host="127.0.0.1", port=free_port()),
        api={"enabled": False},  # not measured; never hold the API's fixed port
    )


async def _until(predicate: Callable[[], bool], what: str, timeout: float = _PHASE_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:g} s waiting for {what}")
        await asyncio.sleep(_POLL_SECONDS)


async def _bare(bootstrap: str, topic: str, expected: int, batch_max_records: int) -> tuple[int, float]:
    """Read ``expected`` messages with no processing; return (messages, seconds)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=_MAX_PARTITION_FETCH_BYTES,
    )
    await consumer.start()
    try:
        await _until(lambda: bool(consumer.assignment()), "the bare consumer's assignment")
        started, consumed = time.perf_counter(), 0
        while consumed < expected:
            batch = await consumer.getmany(timeout_ms=200, max_records=batch_max_records)
            consumed += sum(len(messages) for messages in batch.values())
        return consumed, time.perf_counter() - started
    finally:
        await consumer.stop()


class _Clock:
    """Seconds spent in wrapped methods, by name, and the batch progress of a monitor."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}  # <part name: seconds spent in it>
        self.messages = 0  # messages in batches handled (committed) so far
        self.batches = 0  # batches handled (committed) so far
        self.last_batch_done = 0.0  # perf_counter() when the last batch was committed

    def wrap_sync(self, owner: Any, attribute: str, name: str) -> None:
        method = getattr(owner, attribute)

        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

        setattr(owner, attribute, timed)

    def wrap_async(self, owner: Any, attribute: str, name: str) -> None:
        method = getattr(owner, attribute)

        @functools.wraps(method)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

        setattr(owner, attribute, timed)


def _instrument(app: MonitorApp) -> _Clock:
    """Time the monitor's parts by wrapping its methods on the instances (monitor/ unchanged).

    ``handle`` is one whole batch (steps 1-5 of monitor/pipeline/consumer.py); ``process`` is the
    CPU pipeline, ``alert store`` the SQLite write (in a thread, awaited), ``dead letters``
    and ``commit`` the Kafka round trips; what ``handle`` has beyond those four is
    metrics and lag bookkeeping. Time outside ``handle`` is ``getmany`` (fetch and wait).
    """
    clock = _Clock()
    consumer = app.consumer
    clock.wrap_sync(app.processor, "process", "process")
    clock.wrap_async(consumer, "_record_failures", "alert store")
    clock.wrap_async(consumer, "_dead_letter", "dead letters")
    clock.wrap_async(consumer, "_commit", "commit")
    clock.wrap_async(consumer, "_follow_recoveries", "recovery watch")
    clock.wrap_async(consumer, "_progress", "partition progress")
    if hasattr(consumer, "decode_pool"):  # waiting for frames decoded in a child process
        clock.wrap_async(consumer.decode_pool, "result", "decode (child, awaited)")
    handle = consumer.handle

    async def counted(batch: Any, **options: Any) -> Any:
        started = time.perf_counter()
        result = await handle(batch, **options)
        clock.last_batch_done = time.perf_counter()
        clock.seconds["handle"] = clock.seconds.get("handle", 0.0) + clock.last_batch_done - started
        clock.messages += sum(len(messages) for messages in batch.values())
        clock.batches += 1
        return result

    consumer.handle = counted  # type: ignore[method-assign]
    return clock


async def _start_decode_child(app: MonitorApp) -> float:
    """Start the monitor's decode child process before its run; the seconds it took.

    A running monitor starts it with its first big batch and pays that once; a backlog of
    a few seconds would mostly measure it (it imports this module again: ``spawn``), so
    it is started before the clock, like the group join. 0 when there is none.
    """
    pool = getattr(app.consumer, "decode_pool", None)
    if pool is None or pool.off:
        return 0.0
    started = time.perf_counter()
    pool.submit([b"{}"] * (REFERENCE_BATCH_MAX + 1))  # the first big batch starts it
    await _until(lambda: pool.ready or pool.off, "the decode child process")
    return time.perf_counter() - started


def _raise_if_stopped(task: asyncio.Task[None], consumed: int, expected: int) -> None:
    """Raise the monitor's own error, or say that it stopped before reading everything."""
    if consumed < expected:
        task.result()
        raise RuntimeError(f"the monitor stopped after {consumed} of {expected} messages")


def _assigned(app: MonitorApp) -> bool:
    # The monitor exposes no assignment; its aiokafka consumer is private (read only here).
    kafka = app.consumer._consumer
    return kafka is not None and bool(kafka.assignment())


def _stage_costs(app: MonitorApp, clock: _Clock) -> dict[str, float]:
    """µs per message consumed of each processing stage, the alert store and the commit."""
    seconds = {**app.processor.stage_seconds, "store": clock.seconds.get("alert store", 0.0),
               "commit": clock.seconds.get("commit", 0.0)}
    return {name: round(value / max(clock.messages, 1) * 1e6, 2) for name, value in seconds.items()}


async def _monitor(settings: Settings, expected: int, profile: cProfile.Profile | None,
                   ) -> tuple[int, float, int, dict[str, float], dict[str, float], dict[str, float]]:
    """Run the monitor until ``expected`` messages are committed.

    Returns:
        (messages, seconds, alerts stored, breakdown in seconds, µs per event by stage,
        CPU seconds of the main process and of its child processes).
    """
    children_started = os.times()
    app = MonitorApp(settings)
    clock = _instrument(app)
    warm_up = await _start_decode_child(app)
    cpu_started = time.process_time()
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop, create_topics=False))
    try:
        await _until(lambda: _assigned(app) or task.done(), "the monitor's assignment")
        if task.done():
            task.result()  # surface the start-up error
        started = time.perf_counter()
        if profile is not None:
            profile.enable()
        await _until(lambda: clock.messages >= expected or task.done(), "the monitor to catch up")
        if profile is not None:
            profile.disable()
        _raise_if_stopped(task, clock.messages, expected)
        seconds = clock.last_batch_done - started
    finally:
        stop.set()
        await task  # the decode pool's children exit and are reaped: os.times counts them
    children = os.times()
    cpu = {"main process": round(time.process_time() - cpu_started, 3),
           "child processes": round(children.children_user + children.children_system
                                    - children_started.children_user - children_started.children_system, 3),
           "decode child start-up (wall, not timed)": round(warm_up, 3)}
    parts = clock.seconds
    breakdown = {name: round(parts.get(name, 0.0), 3)
                 for name in ("process", "decode (child, awaited)", "alert store", "dead letters", "commit",
                              "recovery watch", "partition progress")}
    breakdown["metrics and lag"] = round(parts.get("handle", 0.0) - sum(breakdown.values()), 3)
    breakdown["getmany (fetch and wait)"] = round(seconds - parts.get("handle", 0.0), 3)
    return clock.messages, seconds, app.store_summary, breakdown, _stage_costs(app, clock), cpu


def _live_producer(bootstrap: str, topic: str, rate: float, seconds: float, seed: int,
                   sent: Any, took: Any) -> None:
    """Child process: produce the fleet's traffic in real time through librdkafka.

    The traffic is generated and encoded first, then sent paced with ``occurred_at`` = the
    hand-over time (:mod:`bench.live_producer`).
    """
    traffic = live_producer.prepare(bench_fleet(seed), rate=rate, seconds=seconds, seed=seed + 1)
    sent.value, took.value = live_producer.send_paced(traffic, bootstrap_servers=bootstrap, topic=topic)


async def _live(settings: Settings, rate: float, seconds: float, seed: int,
                trace: Path | None = None) -> tuple[int, float, int, list[Any], LiveTrace | None]:
    """Run a monitor while another process produces in real time.

    Returns:
        (events produced, the rate reached over the producer's sending time, batches the
        monitor handled, alerts of the live store, the trace: ``None`` unless ``trace``,
        a file its per-batch rows are appended to).
    """
    app = MonitorApp(settings)
    clock = _instrument(app)
    await _start_decode_child(app)
    traced = LiveTrace(app, app.consumer, clock.seconds) if trace is not None else None
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop, create_topics=False))
    context = multiprocessing.get_context("spawn")  # no fork of a process with running threads
    sent, took = context.Value("q", 0), context.Value("d", 0.0)  # written by the child
    try:
        await _until(lambda: _assigned(app) or task.done(), "the live monitor's assignment")
        if task.done():
            task.result()
        await asyncio.sleep(0.5)  # let the consumer fetch its start offsets before traffic begins
        child = context.Process(target=_live_producer, name="bench-live-producer",
                                args=(settings.kafka.bootstrap_servers, settings.kafka.topic,
                                      rate, seconds, seed, sent, took))
        child.start()
        await asyncio.to_thread(child.join)
        if child.exitcode != 0:
            raise RuntimeError(f"live producer exited with code {child.exitcode}")
        produced = int(sent.value)
        await _until(lambda: clock.messages >= produced or task.done(), "the live monitor to catch up")
        _raise_if_stopped(task, clock.messages, produced)
        await _until(lambda: _all_delivered(app), "the live alerts to be delivered", timeout=60.0)
    finally:
        stop.set()
        await task
    with AlertStore(settings.alerting.store_path) as store:
        alerts = store.list_alerts()
    if traced is not None and trace is not None:
        traced.write(trace, rate)
    return produced, produced / float(took.value), clock.batches, alerts, traced


def _all_delivered(app: MonitorApp) -> bool:
    return all(delivery.status != "pending"
               for alert in app.store.list_alerts() for delivery in alert.deliveries)


def _latencies(alerts: Sequence[Any]) -> tuple[list[float], list[float], list[float]]:
    """(end to end, produce -> stored, stored -> delivered) per alert sent to ``jsonl``, seconds."""
    total, stored, delivered = [], [], []
    for alert in alerts:
        for delivery in alert.deliveries:
            if delivery.channel == "jsonl" and delivery.sent_at is not None:
                total.append((delivery.sent_at - alert.first_event_at).total_seconds())
                stored.append((alert.created_at - alert.first_event_at).total_seconds())
                delivered.append((delivery.sent_at - alert.created_at).total_seconds())
    return total, stored, delivered


async def run_benchmark(*, events: int = 200_000, bootstrap_servers: str | None = None,
                        partitions: int = 3, batch_max_records: int = 5_000,
                        live_rates: Sequence[float] = (2_000.0, 20_000.0),
                        live_seconds: float = 15.0, seed: int = 7,
                        workdir: Path | None = None, profile: cProfile.Profile | None = None,
                        instances: int = 0, store_url: str | None = None,
                        live_trace: Path | None = None,
                        ) -> BenchReport:
    """Run the three phases and return what they measured.

    Args:
        events: size of the backlog both consumers read.
        bootstrap_servers: an existing Kafka; ``None`` starts the embedded broker.
        partitions: partitions of each topic.
        batch_max_records: ``getmany`` bound of both consumers.
        live_rates: events per second of each live phase (one phase per rate, each on
            a fresh topic and store); empty for none.
        live_seconds: length of each live phase (seconds of traffic).
        seed: seed of the fleet and its traffic.
        workdir: folder for the registry and alert stores, kept; ``None`` uses a temporary
            folder removed at the end.
        profile: if given, enabled only while the monitor consumes the backlog.
        instances: N > 1 adds the scale phase (one instance, then N; needs ``events``).
        store_url: PostgreSQL of the scale phase (a schema is created per run); ``None``
            starts a throwaway server.
        live_trace: append each live batch's trace row here (:mod:`bench.live_trace`) and
            summarise it in the report; ``None``: no trace.

    Raises:
        monitor.testing.broker.BrokerError: the embedded broker could not start.
        TimeoutError: a phase did not finish in 10 minutes.
    """
    report = BenchReport(events=events, partitions=partitions, batch_max_records=batch_max_records)
    broker = EmbeddedBroker().start() if bootstrap_servers is None else None
    bootstrap = broker.bootstrap_servers if broker is not None else str(bootstrap_servers)
    scratch = tempfile.TemporaryDirectory(prefix="cardmon-bench-") if workdir is None else None
    work = Path(scratch.name) if scratch is not None else workdir
    assert work is not None
    run = uuid.uuid4().hex[:8]
    try:
        fleet = bench_fleet(seed)
        registry = write_registry(fleet, work / "registry")
        backlog = bench_settings(bootstrap, f"bench-{run}", f"bench-monitor-{run}", batch_max_records,
                            work / "backlog", registry)
        lives = [bench_settings(bootstrap, f"bench-live{number}-{run}", f"bench-live{number}-{run}",
                           batch_max_records, work / f"live{number}", registry)
                 for number, _ in enumerate(live_rates)]
        for settings in (backlog, *lives):
            kafka = settings.kafka
            await ensure_topics(kafka, partitions=partitions, topics=[kafka.topic, kafka.dead_letter_topic])
        span = events / _BACKLOG_EVENT_RATE
        # Start on a window boundary, so the same seed gives the same alerts on every run.
        now = int(time.time())
        start = datetime.fromtimestamp(now - now % _ALERT_WINDOW_SECONDS, UTC)
        traffic = itertools.islice(synthetic_events(
            fleet, start=start, rate=_BACKLOG_EVENT_RATE, faults=default_faults(fleet, span),
            seed=seed), events)
        if events:  # 0: the live phases only
            started = time.perf_counter()
            await produce(traffic, bootstrap_servers=bootstrap, topic=backlog.kafka.topic)
            report.produce_seconds = time.perf_counter() - started
            report.bare_consumed, report.bare_seconds = await _bare(
                bootstrap, backlog.kafka.topic, events, batch_max_records)
            report.bare_rate = report.bare_consumed / report.bare_seconds
            (report.monitor_consumed, report.monitor_seconds, report.alerts_stored,
             report.monitor_breakdown, report.stage_us_per_event, report.cpu_seconds) = await _monitor(
                backlog, events, profile)
            report.monitor_rate = report.monitor_consumed / report.monitor_seconds
            report.ratio = report.monitor_rate / report.bare_rate
        for settings, rate in zip(lives, live_rates, strict=True):
            report.live.append(await _live_phase(settings, rate, live_seconds, seed, live_trace))
        if instances > 1 and events:
            report.scale = await _scale(bootstrap, f"bench-scale-{run}", partitions, instances, events,
                                        fleet, start, seed, store_url, registry, work, batch_max_records)
            report.scale_ratio = report.scale[-1].rate / report.scale[0].rate
        return report
    finally:
        if broker is not None:
            broker.stop()
        if scratch is not None:
            scratch.cleanup()


async def _scale(bootstrap: str, topic: str, partitions: int, instances: int, events: int,
                 fleet: Fleet, start: datetime, seed: int, store_url: str | None,
                 registry: tuple[Path, Path], work: Path, batch_max_records: int) -> list[ScaleRun]:
    """The scale phase: the backlog through one monitor process, then through ``instances``."""
    count = scale_partitions(partitions, instances)
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic=topic, dead_letter_topic=f"{topic}.dlq")
    await ensure_topics(kafka, partitions=count, topics=[topic, kafka.dead_letter_topic])
    span = events / _BACKLOG_EVENT_RATE
    await produce(itertools.islice(synthetic_events(fleet, start=start, rate=_BACKLOG_EVENT_RATE,
                                                    faults=default_faults(fleet, span), seed=seed), events),
                  bootstrap_servers=bootstrap, topic=topic)
    runs = []
    with postgres_store_urls(store_url) as fresh_store:
        for members in (1, instances):
            runs.append(await run_instances(
                bootstrap=bootstrap, topic=topic, partitions=count, events=events, count=members,
                store_url=fresh_store(), registry=registry, work=work, batch_max_records=batch_max_records))
    return runs


async def _live_phase(settings: Settings, rate: float, seconds: float, seed: int,
                      trace: Path | None = None) -> LivePhase:
    """One live phase at ``rate`` events/s, summarised (``trace``: append per-batch rows there)."""
    phase = LivePhase(target_rate=rate)
    phase.events, phase.rate, phase.batches, alerts, traced = await _live(
        settings, rate, seconds, seed, trace)
    phase.trace = summary(traced.rows, traced.passes, traced.woken) if traced is not None else []
    total, stored, delivered = _latencies(alerts)
    phase.alerts = len(total)
    phase.latency_p50, phase.latency_p99 = percentile(total, 0.5), percentile(total, 0.99)
    phase.latency_max = max(total, default=None)
    phase.store_latency_p50, phase.store_latency_p99 = percentile(stored, 0.5), percentile(stored, 0.99)
    phase.delivery_latency_p50 = percentile(delivered, 0.5)
    phase.delivery_latency_p99 = percentile(delivered, 0.99)
    return phase


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def format_report(report: BenchReport) -> str:
    """The report as a small plain-text table."""
    rows: list[tuple[str, str]] = [] if not report.events else [
        ("events in topic", (f"{report.events:,} ({report.partitions} partitions, "
                            f"getmany max {report.batch_max_records:,})")),
        ("produce (as fast as possible)", f"{report.events / report.produce_seconds:,.0f} events/s"),
        ("bare aiokafka consumer", (f"{report.bare_rate:,.0f} events/s "
                                   f"({report.bare_consumed:,} in {report.bare_seconds:.2f} s)")),
        ("whole monitor", (f"{report.monitor_rate:,.0f} events/s "
                          f"({report.monitor_consumed:,} in {report.monitor_seconds:.2f} s)")),
        ("ratio monitor / bare", f"{report.ratio:.2f} (goal >= 0.50)"),
        ("alerts stored (backlog)", f"{report.alerts_stored:,}"),
    ]
    rows += [(f"  monitor time: {name}", f"{seconds:.2f} s")
             for name, seconds in report.monitor_breakdown.items()]
    if report.stage_us_per_event:
        rows.append(("  µs/event by stage", ", ".join(
            f"{name} {cost:.2f}" for name, cost in report.stage_us_per_event.items())))
    rows += [(f"  CPU: {name}", f"{seconds:.2f} s") for name, seconds in report.cpu_seconds.items()]
    for phase in report.live:
        rows += [
            (f"live phase at {phase.target_rate:,.0f}/s",
             (f"{phase.events:,} events at {phase.rate:,.0f} events/s reached, "
              f"{phase.batches:,} batches, {phase.alerts} alerts delivered")),
            ("  alert latency p50", _seconds(phase.latency_p50)),
            ("  alert latency p99", f"{_seconds(phase.latency_p99)} (goal < 0.250 s)"),
            ("  alert latency max", _seconds(phase.latency_max)),
            ("  produced -> stored p50 / p99",
             f"{_seconds(phase.store_latency_p50)} / {_seconds(phase.store_latency_p99)}"),
            ("  stored -> delivered p50 / p99",
             f"{_seconds(phase.delivery_latency_p50)} / {_seconds(phase.delivery_latency_p99)}"),
        ]
        rows += phase.trace
    for scale in report.scale:
        rows.append((f"scale: {scale.instances} instance(s)",
                     f"{scale.rate:,.0f} events/s ({scale.events:,} in {scale.seconds:.2f} s, "
                     f"{scale.batches:,} batches)"))
    if report.scale_ratio is not None:
        rows.append(("scale: N instances / one", f"{report.scale_ratio:.2f}x"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m bench.throughput [options]``; prints the report, returns 0."""
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000,
                        help="backlog size (default 200000; 0: the live phases only)")
    parser.add_argument("--bootstrap-servers", help="an existing Kafka (default: embedded broker)")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--batch-max-records", type=int, default=5_000)
    parser.add_argument("--live-rate", type=float, nargs="*", default=[2_000.0, 20_000.0],
                        help="events/s of the live phases, one phase per rate (default 2000 20000; "
                             "none: no live phase)")
    parser.add_argument("--live-seconds", type=float, default=15.0, help="length of each live phase")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path,
                        help="keep the registry, alert stores and alerts.jsonl here (default: temporary)")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--instances", type=int, default=0,
                        help="also run the backlog through 1 and then N monitor processes in one group "
                             "with a PostgreSQL store, and report the combined rate (default: no)")
    parser.add_argument("--store-url", help="PostgreSQL for --instances (schemas are created in it); "
                                            "default: a throwaway server like the tests'")
    parser.add_argument("--live-trace", type=Path,
                        help="append one JSON line per live batch here (record ages, gap, parts "
                             "of the batch) and summarise them in the report (default: none)")
    parser.add_argument("--profile", type=Path,
                        help="cProfile the monitor's backlog run: write pstats here, print the top 25")
    args = parser.parse_args(argv)
    if args.events < 0 or args.partitions < 1 or args.batch_max_records < 1:
        parser.error("--partitions and --batch-max-records must be positive, --events not negative")
    if args.instances < 0 or args.instances == 1:
        parser.error("--instances must be 2 or more (it compares N instances with one)")
    if any(rate <= 0 for rate in args.live_rate):
        parser.error("--live-rate values must be positive")
    profile = cProfile.Profile() if args.profile else None
    report = asyncio.run(run_benchmark(
        events=args.events, bootstrap_servers=args.bootstrap_servers, partitions=args.partitions,
        batch_max_records=args.batch_max_records, live_rates=args.live_rate,
        live_seconds=args.live_seconds, seed=args.seed, workdir=args.workdir, profile=profile,
        instances=args.instances, store_url=args.store_url, live_trace=args.live_trace))
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    if profile is not None:
        profile.dump_stats(args.profile)
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(25)
        print(text.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
