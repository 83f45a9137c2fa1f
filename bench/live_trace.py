"""Where a live record waits: one row per batch the monitor handles in a live phase.

Optional (``python -m bench.throughput --live-trace FILE``). It wraps the consumer's
``handle`` on the instance (monitor/ unchanged), outside the bench's own timing wrapper,
and for each batch notes:

- ``t``: seconds since the trace started when ``handle`` was called;
- ``gap``: seconds since the previous batch was committed: the read (``getmany``: fetch
  and wait) and the partition progress;
- ``size``, ``partitions``: records in the batch and partitions with records;
- ``oldest_age``, ``newest_age``: wall clock at the call minus the Kafka ``CreateTime``
  of the batch's first / last record (librdkafka stamps it at ``produce()``, the same
  moment as the live event's ``occurred_at``), seconds: how long the records waited
  before they were handed to the pipeline;
- the seconds of each part of ``handle`` (``process``, ``alert store``, ``recovery
  watch``, ``dead letters``, ``commit``) and ``handle`` itself.

It also times each pass of the delivery worker (``_pass``: claim the due outbox rows,
send them, mark them sent) that claimed something: :attr:`LiveTrace.passes`.

:func:`summary` turns the rows into a few lines: percentiles of each column, and the
mean oldest age of the first and last third of the phase (growing: the monitor falls
behind; flat: a fixed wait per record).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["LiveTrace", "summary"]

#: Parts of ``handle`` timed by the bench's clock (bench.throughput._instrument).
_PARTS = ("process", "alert store", "recovery watch", "dead letters", "commit")


class LiveTrace:
    """Per-batch rows of one live phase.

    Args:
        app: the :class:`~monitor.app.MonitorApp` (its delivery worker's passes are timed).
        consumer: the monitor's :class:`~monitor.pipeline.consumer.TransactionConsumer`,
            its ``handle`` already wrapped by the bench's clock.
        seconds: the clock's ``seconds`` dict (part name: seconds so far).

    Attributes:
        rows: one dict per batch handled, in order (keys in the module docstring).
        passes: (wall-clock start, seconds, rows claimed) of each delivery pass that claimed rows.
        woken: seconds from each wake-up of the delivery worker (new outbox rows) to the
            start of the next pass.
    """

    def __init__(self, app: Any, consumer: Any, seconds: dict[str, float]) -> None:
        self.rows: list[dict[str, float]] = []
        self.passes: list[tuple[float, float, int]] = []
        self.woken: list[float] = []
        wakes: list[float] = []  # perf_counter() of wake-ups no pass has started after yet
        wake = app.worker.wake

        def timed_wake() -> None:
            wakes.append(time.perf_counter())
            wake()

        app.worker.wake = timed_wake
        self._seconds = seconds
        self._started = time.perf_counter()
        self._done: float | None = None
        handle = consumer.handle
        one_pass = app.worker._pass  # private: read only by this bench

        async def timed_pass() -> Any:
            started, wall = time.perf_counter(), time.time()
            self.woken.extend(started - at for at in wakes)
            wakes.clear()
            claimed, sent = await one_pass()
            if claimed:
                self.passes.append((wall, time.perf_counter() - started, claimed))
            return claimed, sent

        app.worker._pass = timed_pass

        async def traced(batch: Any, **options: Any) -> Any:
            called = time.perf_counter()
            wall = time.time()
            before = dict(seconds)
            stamps = [records[0].timestamp for records in batch.values() if records]
            lasts = [records[-1].timestamp for records in batch.values() if records]
            result = await handle(batch, **options)
            done = time.perf_counter()
            gap = called - self._done if self._done is not None else 0.0  # first: no previous batch
            row = {"t": round(called - self._started, 4), "gap": round(gap, 4),
                   "size": sum(len(records) for records in batch.values()),
                   "partitions": len(stamps),
                   "oldest_age": round(wall - min(stamps) / 1000, 4) if stamps else 0.0,
                   "newest_age": round(wall - max(lasts) / 1000, 4) if lasts else 0.0,
                   "handle": round(done - called, 4)}
            for part in _PARTS:
                row[part] = round(seconds.get(part, 0.0) - before.get(part, 0.0), 4)
            self.rows.append(row)
            self._done = done
            return result

        consumer.handle = traced

    def write(self, path: Path, rate: float) -> None:
        """Append the rows to ``path`` as JSON lines, each with the phase's ``rate``."""
        with path.open("a", encoding="utf-8") as out:
            for row in self.rows:
                out.write(json.dumps({"rate": rate, **row}) + "\n")
            for wall, seconds, claimed in self.passes:
                out.write(json.dumps({"rate": rate, "pass_started": wall, "seconds": seconds,
                                      "claimed": claimed}) + "\n")


def _pick(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


def summary(rows: Sequence[dict[str, float]], passes: Sequence[tuple[float, float, int]] = (),
            woken: Sequence[float] = ()) -> list[tuple[str, str]]:
    """(name, text) lines: p50 / p99 / max of each column, whether waits grow, delivery passes."""
    busy = [row for row in rows if row["size"]]
    if not busy:
        return [("  trace", "no batch")]
    lines = []
    for column in ("size", "gap", "oldest_age", "newest_age", "handle", *_PARTS):
        values = [row[column] for row in busy]
        lines.append((f"  trace {column} p50 / p99 / max",
                      f"{_pick(values, 0.5):.3f} / {_pick(values, 0.99):.3f} / {max(values):.3f}"))
    third = max(1, len(busy) // 3)
    first = sum(row["oldest_age"] for row in busy[:third]) / third
    last = sum(row["oldest_age"] for row in busy[-third:]) / third
    lines.append(("  trace oldest age, first / last third", f"{first:.3f} / {last:.3f} s"))
    if passes:
        took = [seconds for _, seconds, _ in passes]
        lines.append(("  trace delivery passes", (
            f"{len(passes)}, {sum(n for _, _, n in passes)} rows; seconds p50 / p99 / max "
            f"{_pick(took, 0.5):.3f} / {_pick(took, 0.99):.3f} / {max(took):.3f}")))
    if woken:
        lines.append(("  trace wake-up -> pass p50 / p99 / max",
                      f"{_pick(woken, 0.5):.3f} / {_pick(woken, 0.99):.3f} / {max(woken):.3f}"))
    return lines
