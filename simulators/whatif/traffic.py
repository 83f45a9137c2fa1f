"""The what-if's traffic: a recording read in event-time order and cut into batches.

A live monitor processes what Kafka hands it, a fraction of a second after it
happened. The what-if gets the whole recording at once, so it cuts the batches
itself, the same way for both policies (the cut depends on the events only, never
on the rules):

* the events are sorted by ``occurred_at`` (stable: ties keep file order), as they
  would have arrived live, so none is *late* for the event clock;
* a batch ends before an event that would make it longer than ``max_events``;
* once a batch holds a possible failure (an event whose ``status`` is ``timeout``
  or whose ``response_code`` is not ``00``), it ends before the first event more than
  ``failure_seconds`` after that failure: what the store is told about a failure
  (its alert, its incident) happens at most that long after it, as live. A batch
  of approvals only grows up to ``max_events``, which keeps a sparse recording (one
  client over years) to a few hundred batches.

Each batch carries its events msgspec-JSON-encoded, as the processor reads them off
the topic, and ``at``: the latest event time in it, the moment the what-if records
the batch (the live monitor's wall clock when it would have processed it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from simulators.sources.replay import RecordingFormatError, read_recording
from simulators.sources.tabformer import TabFormerFormatError, tabformer_events

__all__ = ["DEFAULT_FAILURE_SECONDS", "DEFAULT_MAX_EVENTS", "Batch", "TrafficFormat", "batches",
           "read_traffic"]

#: ``auto`` (by suffix), the canonical recordings of :mod:`simulators.sources.replay`,
#: or an IBM TabFormer CSV (:mod:`simulators.sources.tabformer`).
TrafficFormat = Literal["auto", "jsonl", "csv", "parquet", "tabformer"]

#: Most events in one batch.
DEFAULT_MAX_EVENTS: Final = 1_000
#: Event-time seconds a batch may run on after its first possible failure.
DEFAULT_FAILURE_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch of the replay.

    Attributes:
        values: the events, msgspec-JSON-encoded (what the consumer hands the processor).
        at: the latest event time in the batch (aware, UTC or the recording's offset).
    """

    values: tuple[bytes, ...]
    at: datetime


def read_traffic(path: Path, fmt: TrafficFormat = "auto", *, timezone: str = "UTC") -> list[dict[str, Any]]:
    """Read a recording into event dicts sorted by event time.

    Args:
        path: the recording (JSON lines, CSV, Parquet in the canonical schema, or a
            TabFormer CSV with ``fmt="tabformer"``).
        fmt: its format; ``auto`` tells it by suffix (never ``tabformer``).
        timezone: IANA zone of a TabFormer file's wall-clock times.

    Returns:
        Contract-v1 event dicts, ``occurred_at`` an aware ``datetime``, sorted by it
        (stable).

    Raises:
        RecordingFormatError: the file cannot be read as that format (a TabFormer
            error is re-raised as one).
    """
    if fmt == "tabformer":
        try:
            events = [{**event, "occurred_at": datetime.fromisoformat(event["occurred_at"])}
                      for event in tabformer_events(path, timezone=timezone)]
        except (TabFormerFormatError, OSError) as error:
            raise RecordingFormatError(f"{path}: {error}") from error
    else:
        events = read_recording(path, fmt)
    return sorted(events, key=lambda event: event["occurred_at"])


def _may_fail(event: Mapping[str, Any]) -> bool:
    # A cut of the batches only: the rules decide what a failure is, not this.
    return event.get("status") == "timeout" or event.get("response_code") not in (None, "00")


def batches(events: Sequence[Mapping[str, Any]], *, max_events: int = DEFAULT_MAX_EVENTS,
            failure_seconds: float = DEFAULT_FAILURE_SECONDS) -> Iterator[Batch]:
    """Cut time-sorted events into batches (see the module docstring).

    Args:
        events: from :func:`read_traffic` (sorted, ``occurred_at`` aware datetimes).
        max_events: most events per batch (>= 1).
        failure_seconds: how long after its first possible failure a batch may run on.

    Yields:
        :class:`Batch` values, in order; every event is in exactly one.

    Raises:
        ValueError: ``max_events`` below 1 or ``failure_seconds`` negative.
    """
    if max_events < 1 or failure_seconds < 0:
        raise ValueError("max_events must be at least 1 and failure_seconds not negative")
    chunk: list[bytes] = []
    latest: datetime | None = None
    first_failure: datetime | None = None
    for event in events:
        at: datetime = event["occurred_at"]
        if chunk and (len(chunk) >= max_events or (
                first_failure is not None and (at - first_failure).total_seconds() > failure_seconds)):
            assert latest is not None
            yield Batch(tuple(chunk), latest)
            chunk, latest, first_failure = [], None, None
        chunk.append(msgspec.json.encode({**event, "occurred_at": at.isoformat()}))
        latest = at if latest is None or at > latest else latest
        if first_failure is None and _may_fail(event):
            first_failure = at
    if chunk:
        assert latest is not None
        yield Batch(tuple(chunk), latest)
