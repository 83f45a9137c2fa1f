"""Replay recorded traffic in the canonical schema (contract v1) from JSON lines, CSV or Parquet.

A recording is a table with one row per event and the fields of
:class:`monitor.domain.TransactionEvent` as columns (``occurred_at`` an RFC 3339
string with offset, or a timezone-aware Parquet timestamp). Formats:

* JSON lines (``.jsonl``, ``.ndjson``): one event object per line, as on the topic;
* CSV (``.csv``): header row; every column is read as text, then ``amount_minor`` and
  ``latency_ms`` are cast to numbers (``response_code`` ``"00"`` stays text);
  ``decline_reasons`` is ``;``-separated; an empty cell is an absent field;
* Parquet (``.parquet``): typed columns, ``decline_reasons`` a list column.

:func:`replay_events` yields the events in file order, ``loops`` times (``None``:
forever). Loop ``n`` (from 0) is shifted ``n`` times the recording's period — its
span (last minus first ``occurred_at``) plus the mean gap between events — so
timestamps keep increasing, and its ``event_id`` gets the suffix ``-L{n}`` (loop 0
keeps the original IDs), so every loop's events are new to the monitor. With
``jitter_s`` each event is moved by a uniform random offset within ±``jitter_s``
seconds, drawn from ``seed`` (same seed, same replay). Pacing (``speed``),
``rebase_to_now`` and the progress bar are :func:`simulators.producer.produce`'s.
:func:`write_recording` writes events in any of the three formats.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
import polars as pl

from monitor.errors import ConfigurationError
from simulators.producer import DEFAULT_RETRY_SECONDS, produce

__all__ = [
    "RecordingFormat",
    "RecordingFormatError",
    "detect_format",
    "read_recording",
    "replay",
    "replay_events",
    "write_recording",
]

RecordingFormat = Literal["jsonl", "csv", "parquet"]

_SUFFIXES: Final[dict[str, RecordingFormat]] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet",
}
_NUMERIC: Final = {"amount_minor": pl.Int64, "latency_ms": pl.Float64}
_LIST_SEPARATOR: Final = ";"  # decline_reasons in CSV


class RecordingFormatError(ConfigurationError):
    """A recording cannot be read: unknown format, unreadable file, or a missing column."""


def detect_format(path: str | Path) -> RecordingFormat:
    """The format of ``path`` from its suffix.

    Raises:
        RecordingFormatError: the suffix is none of ``.jsonl .ndjson .json .csv .parquet``.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise RecordingFormatError(f"{path}: cannot tell the format from {suffix!r}; pass --format")
    return _SUFFIXES[suffix]


def read_recording(path: str | Path, fmt: RecordingFormat | Literal["auto"] = "auto") -> list[dict[str, Any]]:
    """Read a recording into event dicts (file order, absent fields omitted).

    Args:
        path: the file.
        fmt: ``jsonl``, ``csv``, ``parquet`` or ``auto`` (by suffix).

    Returns:
        Event dicts; ``occurred_at`` is an aware ``datetime``.

    Raises:
        RecordingFormatError: unknown format, unreadable file, no ``event_id``,
            ``terminal_id`` or ``occurred_at`` column, or a naive ``occurred_at``.
    """
    source = Path(path)
    kind = detect_format(source) if fmt == "auto" else fmt
    try:
        if kind == "jsonl":
            rows = [msgspec.json.decode(line) for line in source.read_bytes().splitlines() if line.strip()]
            events = [{k: v for k, v in row.items() if v is not None} for row in rows]
        else:
            if kind == "csv":
                frame = pl.read_csv(source, infer_schema=False)
                frame = frame.with_columns(
                    [pl.col(c).cast(t) for c, t in _NUMERIC.items() if c in frame.columns]
                    + ([pl.col("decline_reasons").str.split(_LIST_SEPARATOR)]
                       if "decline_reasons" in frame.columns else []))
            else:
                frame = pl.read_parquet(source)
            events = [{k: v for k, v in row.items() if v is not None} for row in frame.iter_rows(named=True)]
    except (OSError, pl.exceptions.PolarsError, msgspec.DecodeError) as error:
        raise RecordingFormatError(f"{source}: {error}") from error
    for number, event in enumerate(events, start=1):
        missing = [f for f in ("event_id", "terminal_id", "occurred_at") if f not in event]
        if missing:
            raise RecordingFormatError(f"{source}: event {number} has no {', '.join(missing)}")
        at = event["occurred_at"]
        moment = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
        if moment.tzinfo is None:
            raise RecordingFormatError(f"{source}: event {number} occurred_at {at!r} has no UTC offset")
        event["occurred_at"] = moment
    return events


def write_recording(events: Iterable[Mapping[str, Any]], path: str | Path,
                    fmt: RecordingFormat | Literal["auto"] = "auto") -> int:
    """Write contract-v1 event dicts as a recording; returns the number of events.

    ``occurred_at`` is written as the RFC 3339 text it has (Parquet too, so the
    original offset survives); absent fields are empty (CSV) or null (Parquet).
    """
    target = Path(path)
    kind = detect_format(target) if fmt == "auto" else fmt
    rows = [{**e, "occurred_at": e["occurred_at"].isoformat() if isinstance(e["occurred_at"], datetime)
             else e["occurred_at"]} for e in events]
    if kind == "jsonl":
        target.write_bytes(b"".join(msgspec.json.encode(row) + b"\n" for row in rows))
        return len(rows)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    frame = pl.DataFrame([{c: row.get(c) for c in columns} for row in rows], infer_schema_length=None)
    if kind == "csv":
        if "decline_reasons" in frame.columns:
            frame = frame.with_columns(pl.col("decline_reasons").list.join(_LIST_SEPARATOR))
        frame.write_csv(target)
    else:
        frame.write_parquet(target)
    return len(rows)


def _period(events: list[dict[str, Any]]) -> timedelta:
    """How far one loop is shifted from the previous one: span plus the mean gap (1 s for one event)."""
    times: list[datetime] = [e["occurred_at"] for e in events]
    span: timedelta = max(times) - min(times)
    gap = span / (len(times) - 1) if len(times) > 1 and span else timedelta(seconds=1)
    return span + gap


def replay_events(events: list[dict[str, Any]], *, loops: int | None = 1, jitter_s: float = 0.0,
                  seed: int = 0) -> Iterator[dict[str, Any]]:
    """Yield the recording's events, looped and optionally jittered.

    Args:
        events: from :func:`read_recording` (``occurred_at`` aware datetimes).
        loops: how many times to play the recording; ``None`` plays it forever.
        jitter_s: move each event by a uniform offset in ±``jitter_s`` seconds (0: none).
        seed: seed of the jitter; same seed, same events.

    Yields:
        Event dicts with ``occurred_at`` as RFC 3339 text; loop ``n`` > 0 is shifted
        ``n`` periods later and its ``event_id`` ends with ``-L{n}``.

    Raises:
        ValueError: ``loops`` below 1, or ``jitter_s`` negative.
    """
    if loops is not None and loops < 1:
        raise ValueError(f"loops must be at least 1 or None, not {loops}")
    if jitter_s < 0:
        raise ValueError(f"jitter_s must not be negative, not {jitter_s}")
    if not events:
        return
    rng = random.Random(f"replay-{seed}")
    period = _period(events)
    for loop in itertools.count() if loops is None else range(loops):
        shift = period * loop
        for event in events:
            moment = event["occurred_at"] + shift
            if jitter_s:
                moment += timedelta(seconds=rng.uniform(-jitter_s, jitter_s))
            out = {**event, "occurred_at": moment.isoformat()}
            if loop:
                out["event_id"] = f"{event['event_id']}-L{loop}"
            yield out


async def replay(path: str | Path, *, bootstrap_servers: str, topic: str,
                 fmt: RecordingFormat | Literal["auto"] = "auto", speed: float | None = None,
                 loops: int | None = 1, rebase_to_now: bool = False, jitter_s: float = 0.0,
                 seed: int = 0, progress: bool = False,
                 retry_seconds: float = DEFAULT_RETRY_SECONDS) -> int:
    """Read a recording and send it to Kafka through :func:`simulators.producer.produce`.

    Args:
        path: the recording.
        bootstrap_servers: ``host:port[,...]``.
        topic: destination topic.
        fmt: see :func:`read_recording`.
        speed: ``None`` as fast as possible, ``k`` at ``k`` times real time (gaps kept).
        loops: times to play it; ``None`` forever.
        rebase_to_now: shift every timestamp so the first event happens now.
        jitter_s: see :func:`replay_events`.
        seed: seed of the jitter.
        progress: show a progress bar.
        retry_seconds: how long a broker outage is ridden out (:func:`simulators.producer.produce`).

    Returns:
        Events sent.

    Raises:
        RecordingFormatError: the recording cannot be read.
        aiokafka.errors.KafkaError: the broker failed.
    """
    events = read_recording(path, fmt)
    total = None if loops is None else len(events) * loops
    return await produce(replay_events(events, loops=loops, jitter_s=jitter_s, seed=seed),
                         bootstrap_servers=bootstrap_servers, topic=topic, speed=speed,
                         rebase_to_now=rebase_to_now, progress=progress, total=total,
                         retry_seconds=retry_seconds)
