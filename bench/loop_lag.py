"""How long the event loop stalls while terminal health evaluates and ``/metrics`` is scraped.

Used by :mod:`bench.terminals` (its *loop phase*), after the rounds have filled the
windows of a large fleet. On one asyncio loop, for ``cycles`` cycles:

1. a **probe** task sleeps ``PROBE_INTERVAL_S`` again and again and records how much
   later than asked it woke up: that lag is how long something held the loop (or the
   GIL) at that moment, the *stall*;
2. **live batches** of a few hundred events arrive from another thread at a fixed
   rate (``loop.call_soon_threadsafe``, as aiokafka's fetch completes); the loop takes
   everything that has arrived as one batch (as ``getmany`` does) and processes it as
   ``BatchProcessor`` does with a frame: the metrics' ``observe_batch``, then the
   observers (the health thread's ``observe``); the time from arrival to processed is
   the *batch latency*, the part of an alert's latency the monitor's own loop adds
   (the store write and delivery come after and do not touch terminal health);
3. the scheduled jobs of terminal health run as the scheduler runs them (the
   service's runners, awaited on the loop): state evaluation, then silent detection;
   then a gzip scrape of ``/metrics`` after that new data (by the HTTP client process).

Every probe sample and batch is attributed to what ran meanwhile: an evaluation
(either job), a scrape, the processing of a live batch (the pipeline's own work on
the loop, not a job's), or nothing. The target of issue 10: no job or scrape holds
the loop for more than 50 ms at 100,000 terminals.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import polars as pl

__all__ = ["PROBE_INTERVAL_S", "STALL_TARGET_S", "LoopReport", "LoopTimeline", "run_loop_phase"]

#: How often the probe asks to wake up (seconds): fine enough to see a 50 ms stall ten times over.
PROBE_INTERVAL_S: Final = 0.002
#: Issue 10's bound on one stall caused by a job or a scrape.
STALL_TARGET_S: Final = 0.050

Interval = tuple[float, float]  # (start, end), time.perf_counter() seconds


@dataclass(slots=True)
class LoopTimeline:
    """What ran when on the loop phase (perf_counter seconds)."""

    evaluations: list[Interval] = field(default_factory=list)  # either health job, awaited
    scrapes: list[Interval] = field(default_factory=list)
    batches: list[Interval] = field(default_factory=list)  # a live batch processed on the loop
    probe: list[tuple[float, float]] = field(default_factory=list)  # <(asked at, lag s)>
    latencies: list[tuple[float, float]] = field(default_factory=list)  # <(arrived at, latency s)>
    scrape_seconds: list[float] = field(default_factory=list)  # as the client timed them


@dataclass(frozen=True, slots=True)
class LoopReport:
    """The loop phase in numbers (seconds): stalls by cause, batch latency, jobs and scrapes."""

    cycles: int
    live_events: int
    probe_samples: int
    stall_max_s: float  # longest lag of any probe sample
    stall_p99_s: float
    stall_jobs_max_s: float  # longest lag during a job or a scrape, no live batch processed meanwhile
    stall_evaluation_max_s: float  # during an evaluation (no live batch meanwhile)
    stall_scrape_max_s: float  # during a scrape (no live batch meanwhile)
    stall_batches_max_s: float  # while a live batch was processed on the loop (the pipeline's work)
    evaluate_job_median_s: float  # health_evaluate job, awaited (the work runs on the health thread)
    detect_job_median_s: float  # silent_detection job, awaited
    scrape_median_s: float  # gzip scrape after the jobs' new evaluation, client-timed
    batch_latency_p50_s: float  # arrival -> processed, every live batch
    batch_latency_p99_s: float
    batch_latency_evaluating_p50_s: float  # the batches that arrived while an evaluation ran
    batch_latency_evaluating_p99_s: float
    batch_latency_evaluating_max_s: float


def _overlaps(start: float, end: float, intervals: Sequence[Interval]) -> bool:
    return any(a < end and start < b for a, b in intervals)


def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _probe(timeline: LoopTimeline, stop: asyncio.Event) -> None:
    while not stop.is_set():
        asked = time.perf_counter()
        await asyncio.sleep(PROBE_INTERVAL_S)
        timeline.probe.append((asked, max(0.0, time.perf_counter() - asked - PROBE_INTERVAL_S)))


def _arrivals(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[tuple[float, pl.DataFrame] | None],
              batches: Sequence[pl.DataFrame], per_second: float, stop: threading.Event) -> None:
    """The live traffic: one batch every 1/per_second s, from this thread, as a fetch completes."""
    started = time.perf_counter()
    for index, frame in enumerate(batches):
        due = started + index / per_second
        if stop.wait(max(0.0, due - time.perf_counter())):
            break
        loop.call_soon_threadsafe(queue.put_nowait, (time.perf_counter(), frame))
    loop.call_soon_threadsafe(queue.put_nowait, None)


async def run_loop_phase(
    *, cycles: int, live_batches: Sequence[pl.DataFrame], batches_per_second: float,
    process: Callable[[pl.DataFrame], None], evaluate: Callable[[], Awaitable[None]],
    detect: Callable[[], Awaitable[None]], scrape: Callable[[], float],
) -> tuple[LoopReport, LoopTimeline]:
    """Run the jobs and scrapes ``cycles`` times with the probe and live batches running.

    Args:
        cycles: evaluation + detection + scrape cycles.
        live_batches: the live traffic's frames, sent in order (the phase ends when the
            cycles are done; unsent batches are not sent).
        batches_per_second: their arrival rate.
        process: what the loop does with one live batch (metrics, then observers).
        evaluate: the ``health_evaluate`` job's runner (a coroutine function).
        detect: the ``silent_detection`` job's runner.
        scrape: one gzip scrape after new data (blocking; run in a thread); returns the
            client's seconds.

    Returns:
        The report and the raw timeline.
    """
    loop = asyncio.get_running_loop()
    timeline = LoopTimeline()
    stop, stop_arrivals = asyncio.Event(), threading.Event()
    queue: asyncio.Queue[tuple[float, pl.DataFrame] | None] = asyncio.Queue()
    events = 0

    async def consume() -> None:
        # As getmany does: take everything that has arrived as one batch, then yield to the loop.
        nonlocal events
        ended = False
        while not ended:
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            ended = items[-1] is None
            arrived = [item for item in items if item is not None]
            if not arrived:
                continue
            started = time.perf_counter()
            frame = pl.concat([f for _, f in arrived]) if len(arrived) > 1 else arrived[0][1]
            process(frame)
            done = time.perf_counter()
            events += frame.height
            timeline.batches.append((started, done))
            timeline.latencies += [(at, done - at) for at, _ in arrived]
            await asyncio.sleep(0)

    probe = asyncio.create_task(_probe(timeline, stop), name="loop-probe")
    consumer = asyncio.create_task(consume(), name="live-batches")
    sender = threading.Thread(target=_arrivals, name="live-arrivals",
                              args=(loop, queue, live_batches, batches_per_second, stop_arrivals))
    sender.start()
    evaluate_s: list[float] = []
    detect_s: list[float] = []
    try:
        await asyncio.sleep(0.2)  # the probe's and the traffic's own baseline first
        for _ in range(cycles):
            for job, seconds in ((evaluate, evaluate_s), (detect, detect_s)):
                started = time.perf_counter()
                await job()
                timeline.evaluations.append((started, time.perf_counter()))
                seconds.append(time.perf_counter() - started)
            started = time.perf_counter()
            timeline.scrape_seconds.append(await asyncio.to_thread(scrape))
            timeline.scrapes.append((started, time.perf_counter()))
        await asyncio.sleep(0.2)
    finally:
        stop_arrivals.set()
        await asyncio.to_thread(sender.join)
        await consumer
        stop.set()
        await probe
    return _report(timeline, cycles, events, evaluate_s, detect_s), timeline


def _report(timeline: LoopTimeline, cycles: int, events: int, evaluate_s: list[float],
            detect_s: list[float]) -> LoopReport:
    lags = [lag for _, lag in timeline.probe]
    by_cause: dict[str, list[float]] = {"evaluation": [], "scrape": [], "batches": []}
    for asked, lag in timeline.probe:
        end = asked + PROBE_INTERVAL_S + lag
        if _overlaps(asked, end, timeline.batches):
            by_cause["batches"].append(lag)
        elif _overlaps(asked, end, timeline.evaluations):
            by_cause["evaluation"].append(lag)
        elif _overlaps(asked, end, timeline.scrapes):
            by_cause["scrape"].append(lag)
    evaluating = [latency for arrived, latency in timeline.latencies
                  if _overlaps(arrived, arrived + latency, timeline.evaluations)]
    all_latencies = [latency for _, latency in timeline.latencies]
    return LoopReport(
        cycles=cycles, live_events=events, probe_samples=len(lags),
        stall_max_s=max(lags, default=0.0), stall_p99_s=_quantile(lags, 0.99),
        stall_jobs_max_s=max(by_cause["evaluation"] + by_cause["scrape"], default=0.0),
        stall_evaluation_max_s=max(by_cause["evaluation"], default=0.0),
        stall_scrape_max_s=max(by_cause["scrape"], default=0.0),
        stall_batches_max_s=max(by_cause["batches"], default=0.0),
        evaluate_job_median_s=statistics.median(evaluate_s) if evaluate_s else 0.0,
        detect_job_median_s=statistics.median(detect_s) if detect_s else 0.0,
        scrape_median_s=statistics.median(timeline.scrape_seconds) if timeline.scrape_seconds else 0.0,
        batch_latency_p50_s=_quantile(all_latencies, 0.5),
        batch_latency_p99_s=_quantile(all_latencies, 0.99),
        batch_latency_evaluating_p50_s=_quantile(evaluating, 0.5),
        batch_latency_evaluating_p99_s=_quantile(evaluating, 0.99),
        batch_latency_evaluating_max_s=max(evaluating, default=0.0),
    )
