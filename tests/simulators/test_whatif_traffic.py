"""The what-if's traffic: read in event-time order, cut into batches the same way for every policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from simulators.sources.replay import RecordingFormatError, write_recording
from simulators.whatif.traffic import batches, read_traffic
from tests.helpers import event

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _at(seconds: float, event_id: str, **fields: object) -> dict[str, object]:
    return {**event(event_id, **fields), "occurred_at": START + timedelta(seconds=seconds)}


def test_read_traffic_sorts_by_event_time_keeping_file_order_on_ties(tmp_path: Path) -> None:
    """Events come back sorted by occurred_at; two at the same instant keep their file order."""
    path = tmp_path / "r.jsonl"
    write_recording([_at(60, "late"), _at(0, "tie-a"), _at(0, "tie-b")], path)
    assert [e["event_id"] for e in read_traffic(path)] == ["tie-a", "tie-b", "late"]


def test_read_traffic_reports_an_unreadable_tabformer_file(tmp_path: Path) -> None:
    """A file that is not TabFormer CSV read as tabformer is a RecordingFormatError."""
    path = tmp_path / "not.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(RecordingFormatError):
        read_traffic(path, "tabformer")


def test_approvals_share_a_batch_until_the_size_limit() -> None:
    """Approvals hours apart stay in one batch up to max_events; every event is in exactly one batch."""
    events = [_at(3600 * i, f"ok-{i}") for i in range(5)]
    cut = list(batches(events, max_events=2))
    assert [len(b.values) for b in cut] == [2, 2, 1]
    assert [msgspec.json.decode(v)["event_id"] for b in cut for v in b.values] == [f"ok-{i}" for i in range(5)]
    assert cut[0].at == START + timedelta(hours=1)


def test_a_batch_ends_soon_after_its_first_possible_failure() -> None:
    """After a declined event the batch closes before the first event more than failure_seconds later."""
    events = [_at(0, "ok"), _at(5, "declined", response_code="51"), _at(14, "near"), _at(16, "far"),
              _at(17, "timeout", status="timeout", response_code=None)]
    cut = list(batches(events, failure_seconds=10))
    assert [[msgspec.json.decode(v)["event_id"] for v in b.values] for b in cut] == [
        ["ok", "declined", "near"], ["far", "timeout"]]
    assert [b.at for b in cut] == [START + timedelta(seconds=14), START + timedelta(seconds=17)]
