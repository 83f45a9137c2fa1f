"""Processor micro-benchmark: the monitor's batch processor alone, no broker, no store.

One run (``python -m bench.processor``) builds the fleet and traffic of
:mod:`bench.throughput` (500 terminals, 20,000 clients of whom 1,000 are VIPs, the demo
faults), JSON-encodes ``--events`` of them once, then hands them in batches of ``--batch``
to the :class:`~monitor.pipeline.processor.BatchProcessor` of a whole
:class:`~monitor.app.MonitorApp` (every feature as configured by the throughput bench:
health observers, incidents, metrics), on one thread, and prints:

- the wall time and µs per event of the processing alone;
- the CPU time of the calling thread (the part that holds the GIL or runs in C on it);
  polars' own threads are not in it, so ``wall - thread CPU`` is roughly the time spent
  waiting for polars work done elsewhere;
- each stage's µs per event (:data:`monitor.pipeline.processor.STAGES`).

This isolates the per-batch work from Kafka: whatever the processor costs here, the
whole monitor in ``bench.throughput`` pays on top of fetching. ``--profile PATH``
writes a cProfile of the processing and prints its top 30 by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import pstats
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import msgspec

from bench.throughput import bench_fleet, bench_settings
from monitor.app import MonitorApp
from simulators.fleet import write_registry
from simulators.sources.synthetic import default_faults, synthetic_events

__all__ = ["ProcessorReport", "main", "run"]

#: Event-time rate of the traffic (events/s), as in bench.throughput's backlog.
_EVENT_RATE: Final = 500.0
#: The traffic starts on an alert-window boundary (seconds), so a seed gives the same alerts.
_WINDOW_SECONDS: Final = 600
#: Partitions the batch's messages are spread over (round robin), as the throughput bench's topic.
_PARTITIONS: Final = 3


@dataclass(slots=True)
class ProcessorReport:
    """What one run measured.

    Attributes:
        events: events processed.
        batch: events per batch.
        wall_seconds: wall time of all ``process`` calls.
        thread_cpu_seconds: CPU time of the calling thread during them.
        health_wait_seconds: how long terminal health's thread still needed after the last
            batch (it observes the batches concurrently).
        failures: VIP failures the processor returned.
        stage_us_per_event: each stage's wall time in µs per event.
    """

    events: int
    batch: int
    wall_seconds: float = 0.0
    thread_cpu_seconds: float = 0.0
    health_wait_seconds: float = 0.0
    failures: int = 0
    stage_us_per_event: dict[str, float] = field(default_factory=dict)


def run(*, events: int = 200_000, batch: int = 5_000, seed: int = 7,
        profile: cProfile.Profile | None = None) -> ProcessorReport:
    """Process ``events`` synthetic events in batches of ``batch``; see the module docstring."""
    with tempfile.TemporaryDirectory(prefix="cardmon-bench-proc-") as scratch:
        work = Path(scratch)
        fleet = bench_fleet(seed)
        registry = write_registry(fleet, work / "registry")
        # The broker address is never used: the app is built, not started.
        settings = bench_settings("127.0.0.1:9", "bench-processor", "bench-processor", batch,
                                  work / "store", registry)
        now = int(time.time())
        start = datetime.fromtimestamp(now - now % _WINDOW_SECONDS, UTC)
        traffic = synthetic_events(fleet, start=start, rate=_EVENT_RATE,
                                   faults=default_faults(fleet, events / _EVENT_RATE), seed=seed)
        values: list[bytes | None] = [msgspec.json.encode(event)
                                      for event in itertools.islice(traffic, events)]
        app = MonitorApp(settings)
        app.vip_registry.reload_if_changed()  # what start() does: load the VIP registry
        processor = app.processor
        report = ProcessorReport(events=len(values), batch=batch)
        partitions = [index % _PARTITIONS for index in range(batch)]
        if profile is not None:
            profile.enable()
        wall, cpu = time.perf_counter(), time.thread_time()
        for first in range(0, len(values), batch):
            chunk = values[first:first + batch]
            result = processor.process(chunk, partitions=partitions[:len(chunk)])
            report.failures += len(result.failures)
        report.wall_seconds = time.perf_counter() - wall
        report.thread_cpu_seconds = time.thread_time() - cpu
        # Terminal health observes the batches on its own thread (competing for the GIL
        # meanwhile); the run ends when it has caught up.
        app.health.worker.drain()
        report.health_wait_seconds = time.perf_counter() - wall - report.wall_seconds
        app.health.worker.close()
        if profile is not None:
            profile.disable()
        report.stage_us_per_event = {stage: seconds / len(values) * 1e6
                                     for stage, seconds in processor.stage_seconds.items()}
        return report


def format_report(report: ProcessorReport) -> str:
    """The report as aligned text lines."""
    per_event = report.wall_seconds / report.events * 1e6
    stages = ", ".join(f"{stage} {cost:.2f}" for stage, cost in report.stage_us_per_event.items())
    return "\n".join([
        f"events processed            {report.events:,} (batches of {report.batch:,})",
        (f"processing wall time        {report.wall_seconds:.2f} s ({per_event:.2f} µs/event, "
         f"{report.events / report.wall_seconds:,.0f} events/s)"),
        f"calling thread CPU          {report.thread_cpu_seconds:.2f} s",
        f"health thread after that    {report.health_wait_seconds:.2f} s",
        f"VIP failures                {report.failures:,}",
        f"µs/event by stage           {stages}",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its report; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench.processor", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", type=Path, help="write a cProfile here and print its top 30")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    profile = cProfile.Profile() if args.profile else None
    report = run(events=args.events, batch=args.batch, seed=args.seed, profile=profile)
    print(format_report(report))
    if args.json:
        args.json.write_text(msgspec.json.encode(asdict(report)).decode())
    if profile is not None:
        profile.dump_stats(args.profile)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
