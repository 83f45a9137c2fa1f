"""How many polars calls the batch processor makes per batch, by stage (``python -m bench.polars_calls``).

Runs :func:`bench.processor.run` (the processor alone, the throughput bench's fleet and
traffic) while counting, on the calling thread only (terminal health's thread is not
counted), every polars query executed:

- *eager*: a ``DataFrame`` method that runs a plan (``select``, ``with_columns``,
  ``filter``, ``drop``, ``group_by().agg()``...; polars runs each as a plan of its own);
- *lazy*: an explicit ``LazyFrame.collect()``;
- *collect_all*: one ``polars.collect_all`` (several plans, one call).

Each call has a fixed cost (planning, the thread pool, the GIL released and taken
back) that a small live batch pays as much as a 5,000-event one. ``--sites`` also lists
the calls by the line of ``monitor/`` that made them.

The counting wraps polars internals (the in-memory engine's ``collect``), so it is a
measuring tool for this polars version, not an interface.
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import polars as pl
from polars.lazyframe import engine_config

import monitor.pipeline.processor as processor_module
from bench import processor as bench_processor

__all__ = ["main"]

#: Kinds of call counted, in the order printed.
KINDS = ("eager", "lazy", "collect_all")


class _Counts:
    """The calls counted: per stage of the processor and per call site."""

    def __init__(self) -> None:
        self.total: collections.Counter[str] = collections.Counter()  # <kind: calls>
        self.stages: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.sites: collections.Counter[str] = collections.Counter()  # <"kind file:line function": calls>
        self.mark: collections.Counter[str] = collections.Counter()  # totals at the last stage lap
        self.in_lazy = False  # a LazyFrame.collect runs (its engine call is not eager)
        self.processing = False  # the first batch began (the app's setup is not counted by site)

    def add(self, kind: str) -> None:
        self.total[kind] += 1
        if not self.processing:
            return
        frame: Any = sys._getframe(2)
        while frame is not None and ("/monitor/" not in frame.f_code.co_filename
                                     or frame.f_code.co_filename.endswith("/monitor/frames.py")):
            frame = frame.f_back
        if frame is not None:
            where = frame.f_code.co_filename.split("/monitor/")[1]
            self.sites[f"{kind:11s} {where}:{frame.f_lineno} {frame.f_code.co_name}"] += 1

    def lap(self, stage: str) -> None:
        self.stages[stage].update(self.total - self.mark)
        self.mark = collections.Counter(self.total)


def _on_main(function: Callable[..., Any], counted: Callable[[], None]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            counted()
        return function(*args, **kwargs)
    return wrapper


@contextmanager
def _counting(counts: _Counts) -> Iterator[None]:
    """Count polars calls and processor stages while inside."""
    engine = type(engine_config._eager_engine())
    saved = (engine.collect, pl.LazyFrame.collect, pl.collect_all,
             processor_module._Laps.__init__, processor_module._Laps.__call__)
    engine_collect, lazy_collect, collect_all, laps_init, laps_call = saved

    def eager(self: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is threading.main_thread() and not counts.in_lazy:
            counts.add("eager")
        return engine_collect(self, *args, **kwargs)

    def lazy(self: pl.LazyFrame, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return lazy_collect(self, *args, **kwargs)
        counts.add("lazy")
        counts.in_lazy = True
        try:
            return lazy_collect(self, *args, **kwargs)
        finally:
            counts.in_lazy = False

    def init(self: Any, seconds: dict[str, float]) -> None:
        counts.mark = collections.Counter(counts.total)
        counts.processing = True
        laps_init(self, seconds)

    def call(self: Any, stage: str) -> None:
        counts.lap(stage)
        laps_call(self, stage)

    engine.collect = eager  # type: ignore[method-assign]
    pl.LazyFrame.collect = lazy  # type: ignore[method-assign]
    pl.collect_all = _on_main(collect_all, lambda: counts.add("collect_all"))
    processor_module._Laps.__init__ = init  # type: ignore[method-assign]
    processor_module._Laps.__call__ = call  # type: ignore[method-assign]
    try:
        yield
    finally:
        engine.collect = engine_collect  # type: ignore[method-assign]
        pl.LazyFrame.collect = lazy_collect  # type: ignore[method-assign]
        pl.collect_all = collect_all
        processor_module._Laps.__init__ = laps_init  # type: ignore[method-assign]
        processor_module._Laps.__call__ = laps_call  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the processor bench counting polars calls; print them per batch by stage."""
    parser = argparse.ArgumentParser(prog="python -m bench.polars_calls", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sites", action="store_true", help="also list the calls by line of monitor/")
    args = parser.parse_args(argv)
    counts = _Counts()
    with _counting(counts):
        report = bench_processor.run(events=args.events, batch=args.batch, seed=args.seed)
    batches = -(-report.events // report.batch)
    print(bench_processor.format_report(report))
    print(f"polars calls per batch ({batches} batches), calling thread: " + " / ".join(KINDS))
    for stage, kinds in counts.stages.items():
        print(f"  {stage:12s} " + "  ".join(f"{kinds[k] / batches:6.2f}" for k in KINDS))
    totals = [sum(kinds[k] for kinds in counts.stages.values()) / batches for k in KINDS]
    print(f"  {'total':12s} " + "  ".join(f"{t:6.2f}" for t in totals) + f"   (all: {sum(totals):.2f})")
    if args.sites:
        for site, calls in counts.sites.most_common():
            if calls / batches >= 0.01:
                print(f"  {calls / batches:6.2f}  {site}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
