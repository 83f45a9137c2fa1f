"""Scale-out measurement: N monitor processes in one consumer group sharing a PostgreSQL store.

``python -m bench.throughput --instances N`` runs this after the other phases, twice on
the same backlog (a topic of its own whose partition count is a multiple of N, so the
group's assignment is even): once with **one** instance, once with **N**, each run with
a fresh consumer group and a fresh, empty PostgreSQL alert store (a schema of its own).

Each instance is a separate process (``multiprocessing`` spawn: its own interpreter,
GIL and event loop) running a whole :class:`~monitor.app.MonitorApp` with every feature
on, the ``jsonl`` sink and the shared PostgreSQL store. To measure the group and not its
joins, each instance holds its first batch until the parent says *go*, which it does
once the members' assignments cover every partition (the group is stable). The rate is
``events / (last offset committed - go)``, read from the group's committed offsets
(every partition at its end), so a batch handled twice around a rebalance is not
counted twice.

PostgreSQL comes from ``--store-url`` (a database where the bench may create schemas),
else a throwaway server is started the way the tests start theirs (``tests/postgres.py``:
``fsync`` off, so this measures the monitor and not the disk).
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition

from monitor.app import MonitorApp
from monitor.config import (
    AlertingSettings,
    KafkaSettings,
    MetricsSettings,
    RegistrySettings,
    isolated_settings,
)
from monitor.testing.broker import free_port
from tests.postgres import PostgresServer

__all__ = ["ScaleRun", "postgres_store_urls", "run_instances", "scale_partitions"]

_POLL_SECONDS: Final = 0.05
_PHASE_TIMEOUT_SECONDS: Final = 600.0


@dataclass(slots=True)
class ScaleRun:
    """One run of the scale phase.

    Attributes:
        instances: monitor processes in the group.
        events: events in the topic (all committed at the end).
        seconds: from *go* to the last partition's offset committed.
        rate: ``events / seconds`` (combined, events/s).
        batches: batches handled, summed over the instances (a redelivered one counts again).
    """

    instances: int
    events: int
    seconds: float
    rate: float
    batches: int


@contextmanager
def postgres_store_urls(store_url: str | None) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty store URLs (one schema each) on ``store_url`` or a throwaway server."""
    server = PostgresServer().start() if store_url is None else None
    base = server.url() if server is not None else str(store_url)

    def fresh() -> str:
        schema = "bench_" + uuid.uuid4().hex[:12]
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        parts = urlsplit(base)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
        query.append(("options", f"-csearch_path={schema}"))
        return urlunsplit(parts._replace(query=urlencode(query)))

    try:
        yield fresh
    finally:
        if server is not None:
            server.stop()


def _instance(bootstrap: str, topic: str, group: str, store_url: str, registry: tuple[str, str],
              work: str, batch_max_records: int, assigned: Any, batches: Any, go: Any, stop: Any) -> None:
    """Child process: one whole monitor in the group until ``stop`` is set."""
    asyncio.run(_run_instance(bootstrap, topic, group, store_url, registry, Path(work),
                              batch_max_records, assigned, batches, go, stop))


async def _run_instance(bootstrap: str, topic: str, group: str, store_url: str,
                        registry: tuple[str, str], work: Path, batch_max_records: int,
                        assigned: Any, batches: Any, go: Any, stop: Any) -> None:
    settings = isolated_settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap, topic=topic, dead_letter_topic=f"{topic}.dlq",
                            group_id=group, batch_max_records=batch_max_records),
        registry=RegistrySettings(customers_path=Path(registry[0]), managers_path=Path(registry[1])),
        alerting=AlertingSettings(store_url=store_url, sinks=("jsonl",), jsonl_path=work / "alerts.jsonl"),
        metrics=MetricsSettings(host="127.0.0.1", port=free_port()),
        api={"enabled": False},
    )
    app = MonitorApp(settings)
    handle = app.consumer.handle

    async def gated(batch: Any, **options: Any) -> Any:
        if not go.is_set():
            await asyncio.to_thread(go.wait)
        result = await handle(batch, **options)
        batches.value += 1
        return result

    app.consumer.handle = gated  # type: ignore[method-assign]
    stopping = asyncio.Event()

    async def report() -> None:  # the assignment's size, for the parent's "group is stable"
        while not stopping.is_set():
            kafka = app.consumer._consumer  # private: read only here, as in bench/throughput.py
            assigned.value = len(kafka.assignment()) if kafka is not None else 0
            if stop.is_set():
                stopping.set()
            await asyncio.sleep(_POLL_SECONDS)

    reporter = asyncio.create_task(report())
    try:
        await app.run(stopping, create_topics=False)
    finally:
        stopping.set()
        await reporter


async def _committed(reader: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Whether the reader's group has committed every partition at its end offset."""
    for tp, end in ends.items():
        if (await reader.committed(tp) or 0) < end:
            return False
    return True


async def _ends(bootstrap: str, topic: str, partitions: int) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def _until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _PHASE_TIMEOUT_SECONDS
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await asyncio.sleep(_POLL_SECONDS)


async def run_instances(*, bootstrap: str, topic: str, partitions: int, events: int, count: int,
                        store_url: str, registry: tuple[Path, Path], work: Path,
                        batch_max_records: int) -> ScaleRun:
    """Run ``count`` monitor processes in a fresh group on ``topic`` until all is committed.

    Raises:
        RuntimeError: an instance exited before the end.
        TimeoutError: the group did not settle or finish within 10 minutes.
    """
    context = multiprocessing.get_context("spawn")
    group = f"bench-scale{count}-{uuid.uuid4().hex[:8]}"
    go, stop = context.Event(), context.Event()
    assigned = [context.Value("i", 0) for _ in range(count)]
    batches = [context.Value("q", 0) for _ in range(count)]
    children = [context.Process(
        target=_instance, name=f"bench-instance-{number}",
        args=(bootstrap, topic, group, store_url, (str(registry[0]), str(registry[1])),
              str(work / f"scale{count}-{number}"), batch_max_records, assigned[number],
              batches[number], go, stop))
        for number in range(count)]
    for child in children:
        child.start()
    try:
        ends = await _ends(bootstrap, topic, partitions)

        def settled() -> bool:
            if any(not child.is_alive() for child in children):
                raise RuntimeError("a monitor instance exited before the end")
            return (all(value.value > 0 for value in assigned)
                    and sum(value.value for value in assigned) == partitions)

        await _until(settled, "the group to settle")
        await asyncio.sleep(1.0)  # no member still joining: the assignment stays as it is
        await _until(settled, "the group to settle")
        # Reads the group's committed offsets; never subscribes, so never joins the group.
        reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await reader.start()
        try:
            go.set()
            started = time.perf_counter()
            while not await _committed(reader, ends):
                if time.perf_counter() - started > _PHASE_TIMEOUT_SECONDS:
                    raise TimeoutError("gave up waiting for the group to commit every partition")
                if any(not child.is_alive() for child in children):
                    raise RuntimeError("a monitor instance exited before the end")
                await asyncio.sleep(_POLL_SECONDS)
            seconds = time.perf_counter() - started
        finally:
            await reader.stop()
    finally:
        go.set()
        stop.set()
        await asyncio.gather(*(asyncio.to_thread(functools.partial(child.join, 60)) for child in children))
        for child in children:
            if child.is_alive():
                child.terminate()
    return ScaleRun(instances=count, events=events, seconds=seconds, rate=events / seconds,
                    batches=sum(value.value for value in batches))


def scale_partitions(partitions: int, instances: int) -> int:
    """Partitions of the scale topic: at least ``partitions``, a multiple of ``instances``."""
    return -(-partitions // instances) * instances

