"""The health thread: batches and evaluations off the event loop, in order, bounded, closed cleanly."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from prometheus_client import CollectorRegistry

from monitor.config import HealthSettings, KafkaSettings
from monitor.health.scheduling import EVALUATE_JOB, SILENT_DETECTION_JOB
from monitor.health.service import TerminalHealthService
from monitor.health.silent import SilentDetector, SilentRules
from monitor.health.state import HealthBook, HealthRules
from monitor.health.worker import HealthWorker, HealthWorkerClosed
from monitor.metrics import FrameFamily
from monitor.pipeline.batch_frame import EVENT_SCHEMA
from tests.health.conftest import T0, Batch, at

RULES_FILE = Path(__file__).resolve().parents[2] / "rules" / "health.yaml"


def fleet_batch(terminals: int, minute: int, *, technical_every: int = 0) -> pl.DataFrame:
    """One transaction per terminal in minute ``minute`` after T0; every ``technical_every``-th fails."""
    row = pl.int_range(0, terminals, dtype=pl.Int64)
    start_us = int((T0 + timedelta(minutes=minute)).timestamp() * 1_000_000)
    failing = (row % technical_every == 0) if technical_every else pl.lit(False)
    frame = pl.select(
        event_id=pl.format("e-{}-{}", pl.lit(minute), row),
        occurred_at=(pl.lit(start_us) + (row * 7919) % 60_000_000).cast(pl.Datetime("us", "UTC")),
        channel=pl.lit("POS"),
        terminal_id=pl.format("T{}", row.cast(pl.String).str.zfill(7)),
        merchant_id=pl.format("M{}", (row // 4).cast(pl.String)),
        region=pl.lit("Bretagne"),
        branch_id=pl.format("B{}", (row // 40).cast(pl.String)),
        latency_ms=pl.lit(150.0),
        entry_mode=pl.lit("chip"),
        outcome=pl.when(failing).then(pl.lit("technical")).otherwise(pl.lit("approved")),
    )
    return frame.with_columns(pl.col(name).cast(dtype) for name, dtype in EVENT_SCHEMA.items()
                              if name in frame.columns)


class ThreadRecordingBook(HealthBook):
    """A real HealthBook that records the thread each of its evaluations ran on."""

    def __init__(self, rules: HealthRules) -> None:
        super().__init__(rules)
        self.evaluated_on: list[int] = []

    def evaluate(self, now: datetime) -> None:
        self.evaluated_on.append(threading.get_ident())
        super().evaluate(now)


@pytest.fixture
def worker_and_book() -> Iterator[tuple[HealthWorker, HealthBook]]:
    """A book and detector owned by a health thread, closed after the test."""
    book = HealthBook(HealthRules.load(RULES_FILE))
    worker = HealthWorker((book, SilentDetector(SilentRules(), started_at=T0)))
    yield worker, book
    worker.close()


def test_batches_are_observed_on_the_health_thread_in_order(
        worker_and_book: tuple[HealthWorker, HealthBook], batch: Batch) -> None:
    """observe() returns at once; the thread applies the batches in order and the book holds all of them."""
    worker, book = worker_and_book
    for n in range(12):
        worker.observe(batch([{"terminal_id": "T1", "at": n, "outcome": "technical"}]), now=at(60))
    assert worker.drain(timeout=30)
    assert worker.thread_id is not None and worker.thread_id != threading.get_ident()
    book.evaluate(at(60))
    state = book.state_of("T1")
    assert state is not None and state[0].label == "failing"
    assert book.snapshot().row(0, named=True)["consecutive_technical"] == 12


def test_an_evaluation_sees_exactly_the_batches_submitted_before_it(
        worker_and_book: tuple[HealthWorker, HealthBook], batch: Batch) -> None:
    """Evaluations queued between batches give the states a synchronous run gives at the same points."""
    worker, book = worker_and_book
    reference = HealthBook(HealthRules.load(RULES_FILE))
    frames = [batch([{"terminal_id": "T1", "at": n, "outcome": "technical" if n >= 6 else "approved"}])
              for n in range(12)]
    seen: list[tuple[int, int]] = []
    expected: list[tuple[int, int]] = []
    for n, frame in enumerate(frames):
        worker.observe(frame, now=at(60))
        reference.observe(frame, now=at(60))
        if n % 3 == 2:
            def record(n: int = n) -> None:
                book.evaluate(at(60))
                seen.append((n, int(book.snapshot().row(0, named=True)["consecutive_technical"])))
            worker.submit(record)
            reference.evaluate(at(60))
            expected.append((n, int(reference.snapshot().row(0, named=True)["consecutive_technical"])))
    assert worker.drain(timeout=30)
    assert seen == expected == [(2, 0), (5, 0), (8, 3), (11, 6)]


def test_observe_keeps_only_the_columns_health_reads(batch: Batch) -> None:
    """The frames waiting for the thread hold the health columns, not the card or customer ones."""
    received: list[list[str]] = []

    class Columns:
        def observe(self, frame: pl.DataFrame, now: datetime | None = None) -> None:
            received.append(frame.columns)

    columns = HealthWorker((Columns(),))
    try:
        columns.observe(batch([{"terminal_id": "T1", "at": 0}]))
        assert columns.drain(timeout=30)
    finally:
        columns.close()
    assert received and not {"pan_masked", "card_ref", "customer_id", "amount_minor"} & set(received[0])
    assert {"terminal_id", "occurred_at", "outcome", "latency_ms", "entry_mode"} <= set(received[0])


def test_an_observer_that_raises_is_logged_and_the_others_still_get_the_batch(
        batch: Batch, caplog: pytest.LogCaptureFixture) -> None:
    """A failing observer costs only itself: the next observer and the next batches still run."""
    got: list[int] = []

    class Broken:
        def observe(self, frame: pl.DataFrame, now: datetime | None = None) -> None:
            raise RuntimeError("broken view")

    class Counting:
        def observe(self, frame: pl.DataFrame, now: datetime | None = None) -> None:
            got.append(frame.height)

    worker = HealthWorker((Broken(), Counting()))
    try:
        with caplog.at_level(logging.ERROR, logger="monitor.health.worker"):
            worker.observe(batch([{"terminal_id": "T1", "at": 0}]))
            worker.observe(batch([{"terminal_id": "T1", "at": 1}, {"terminal_id": "T2", "at": 1}]))
            assert worker.drain(timeout=30)
    finally:
        worker.close()
    assert got == [1, 2]
    assert sum("Broken failed on a batch" in r.getMessage() for r in caplog.records) == 2


def test_observe_blocks_while_too_many_events_wait_then_resumes(batch: Batch) -> None:
    """Past max_pending_events the caller waits for the thread (bounded memory), and goes on once it caught up."""
    release = threading.Event()
    got: list[int] = []

    class Held:
        def observe(self, frame: pl.DataFrame, now: datetime | None = None) -> None:
            release.wait(30)
            got.append(frame.height)

    worker = HealthWorker((Held(),), max_pending_events=3)
    returned = threading.Event()
    try:
        worker.observe(batch([{"terminal_id": "T1", "at": n} for n in range(2)]))

        def third() -> None:
            worker.observe(batch([{"terminal_id": "T1", "at": n} for n in range(2)]))
            returned.set()

        caller = threading.Thread(target=third)
        caller.start()
        assert not returned.wait(0.3)  # 2 + 2 > 3: blocked while the first batch is held
        assert worker.pending_events == 2
        release.set()
        assert returned.wait(30)
        caller.join(30)
        assert worker.drain(timeout=30)
    finally:
        release.set()
        worker.close()
    assert got == [2, 2]


async def test_after_close_batches_are_dropped_and_calls_refused(batch: Batch) -> None:
    """A closed worker takes nothing: observe drops the batch, call raises HealthWorkerClosed."""
    got: list[int] = []

    class Counting:
        def observe(self, frame: pl.DataFrame, now: datetime | None = None) -> None:
            got.append(frame.height)

    worker = HealthWorker((Counting(),))
    await asyncio.to_thread(worker.close)
    worker.observe(batch([{"terminal_id": "T1", "at": 0}]))
    with pytest.raises(HealthWorkerClosed):
        await worker.call(lambda: None)
    assert got == [] and worker.closed


def _service() -> TerminalHealthService:
    settings = HealthSettings(consume_status=False)
    return TerminalHealthService(settings, KafkaSettings(), registry=CollectorRegistry())


async def test_the_health_jobs_run_their_polars_work_on_the_health_thread() -> None:
    """The evaluation and silent-detection jobs only await: the book and detector run on the health thread."""
    service = _service()
    book = ThreadRecordingBook(service.book.rules)
    service.book = book
    service.worker.observers = (book, service.detector)
    detected_on: list[int] = []
    evaluate_detector = service.detector.evaluate

    def recording(now: datetime | None = None) -> set[str]:
        detected_on.append(threading.get_ident())
        return evaluate_detector(now)

    service.detector.evaluate = recording  # type: ignore[method-assign]
    service.wall_clock = lambda: at(120)
    try:
        for observer in service.observers:
            observer.observe(fleet_batch(50, 0), now=at(120))
        runners = service.jobs()
        await runners[EVALUATE_JOB]()
        await runners[SILENT_DETECTION_JOB]()
        loop_thread = threading.get_ident()
        assert book.evaluated_on == [service.worker.thread_id]
        assert detected_on == [service.worker.thread_id] and loop_thread not in detected_on
        assert sum(book.states_count().values()) == 50
    finally:
        await service.stop()


async def test_a_loop_probe_sees_no_stall_while_a_large_book_evaluates() -> None:
    """While the evaluation job runs on 20,000 terminals the loop keeps ticking: no stall near its duration."""
    service = _service()
    service.wall_clock = lambda: at(6 * 60)
    for minute in range(6):
        for observer in service.observers:
            observer.observe(fleet_batch(20_000, minute, technical_every=50), now=at(6 * 60))
    assert service.worker.drain(timeout=120)
    started = time.perf_counter()
    service.book.evaluate(at(6 * 60))  # the work itself, for scale (here, off the loop's hands)
    duration = time.perf_counter() - started

    lags: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            asked = time.perf_counter()
            await asyncio.sleep(0.002)
            lags.append(time.perf_counter() - asked - 0.002)

    ticking = asyncio.create_task(probe())
    try:
        await asyncio.sleep(0.05)
        before = len(lags)
        started = time.perf_counter()
        await service.jobs()[EVALUATE_JOB]()
        awaited = time.perf_counter() - started
        ticks = len(lags) - before
    finally:
        stop.set()
        await ticking
        await service.stop()
    assert sum(service.book.states_count().values()) == 20_000
    # On the loop, one stall would last the whole evaluation; off it, the loop ticked throughout.
    assert max(lags) < max(0.25, duration / 2), (max(lags), duration)
    assert ticks >= 10, (ticks, awaited)


async def test_jobs_after_stop_are_quiet_no_ops() -> None:
    """A health job that fires while the monitor stops neither raises nor evaluates."""
    service = _service()
    runners = service.jobs()
    await service.stop()
    await runners[EVALUATE_JOB]()
    await runners[SILENT_DETECTION_JOB]()
    assert sum(service.book.states_count().values()) == 0


def test_worker_refuses_a_non_positive_bound() -> None:
    """max_pending_events must be at least 1."""
    with pytest.raises(ValueError, match="max_pending_events"):
        HealthWorker((), max_pending_events=0)


def test_now_is_taken_when_the_batch_is_handed_over(batch: Batch) -> None:
    """A batch that waits is capped at the wall clock of its hand-over, not of its processing."""
    nows: list[datetime | None] = []

    class Recording:
        def observe(self, frame: pl.DataFrame, now: datetime | None = None) -> None:
            nows.append(now)

    worker = HealthWorker((Recording(),))
    try:
        before = datetime.now(UTC)
        worker.observe(batch([{"terminal_id": "T1", "at": 0}]))
        after = datetime.now(UTC)
        assert worker.drain(timeout=30)
    finally:
        worker.close()
    assert len(nows) == 1 and nows[0] is not None and before <= nows[0] <= after


async def test_the_evaluation_job_leaves_the_health_families_compressed_for_the_scrape() -> None:
    """After the evaluation job the health families of that evaluation are rendered and compressed already."""
    service = _service()
    service.wall_clock = lambda: at(120)
    try:
        for observer in service.observers:
            observer.observe(fleet_batch(50, 0, technical_every=5), now=at(120))
        await service.jobs()[EVALUATE_JOB]()
        families = [*service.state_collector.collect(), *service.collector.collect()]
    finally:
        await service.stop()
    frame_families = [f for f in families if isinstance(f, FrameFamily)]
    assert len(frame_families) == 5 and all(f.compressed for f in frame_families)
    states = next(f for f in frame_families if f.name == "cardmon_terminal_health_state")
    assert states.series == 50
