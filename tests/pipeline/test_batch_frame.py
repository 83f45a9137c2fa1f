"""The batch frame: one polars row per decoded event with the canonical schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import polars as pl

from monitor.pipeline.batch_frame import EVENT_SCHEMA, events_frame
from monitor.pipeline.decoder import decode_batch
from tests.helpers import encode, event


def test_frame_has_the_canonical_schema_in_batch_order() -> None:
    """The frame has exactly the EVENT_SCHEMA columns and dtypes, one row per event in batch order."""
    decoded = decode_batch([encode(event(f"e{i}", amount_minor=100 * i)) for i in range(3)])
    frame = events_frame(decoded.events)
    assert frame.schema == pl.Schema(EVENT_SCHEMA)
    assert frame.get_column("event_id").to_list() == ["e0", "e1", "e2"]
    assert frame.get_column("amount_minor").to_list() == [0, 100, 200]


def test_occurred_at_is_normalised_to_utc_and_stays_aware() -> None:
    """Offsets (+02:00, -05:00, Z) become the same instants in UTC, still timezone-aware."""
    values = [
        encode(event("plus2", occurred_at="2026-03-02T10:15:00.123456+02:00")),
        encode(event("minus5", occurred_at="2026-03-02T03:15:00.123456-05:00")),
        encode(event("zulu", occurred_at="2026-03-02T08:15:00.123456Z")),
    ]
    frame = events_frame(decode_batch(values).events)
    assert frame.schema["occurred_at"] == pl.Datetime("us", "UTC")
    expected = datetime(2026, 3, 2, 8, 15, 0, 123456, tzinfo=UTC)
    times = frame.get_column("occurred_at").to_list()
    assert times == [expected, expected, expected]
    assert all(t.utcoffset() == timedelta(0) for t in times)
    assert times[0].astimezone(timezone(timedelta(hours=2))).hour == 10


def test_optional_fields_are_null_and_values_keep_their_types() -> None:
    """Absent optional fields are nulls; money stays integer minor units and latency float milliseconds."""
    value = event("e1", amount_minor=123456789012, latency_ms=30012, merchant_id="M-77",
                  stan="000912", rrn="123456789012", status="timeout")
    del value["response_code"]
    frame = events_frame(decode_batch([encode(value)]).events)
    row = frame.row(0, named=True)
    assert row["amount_minor"] == 123456789012
    assert row["latency_ms"] == 30012.0
    assert row["status"] == "timeout"
    assert row["response_code"] is None
    assert row["customer_id"] is None and row["pan_masked"] is None and row["entry_mode"] is None
    assert (row["merchant_id"], row["stan"], row["rrn"]) == ("M-77", "000912", "123456789012")


def test_raw_pan_never_reaches_the_frame() -> None:
    """A raw PAN sent by a producer appears in the frame only masked, in no column."""
    decoded = decode_batch([encode(event("e1", pan="4111111111111111"))])
    frame = events_frame(decoded.events)
    assert "pan" not in frame.columns and "raw_pan" not in frame.columns
    assert frame.get_column("pan_masked").to_list() == ["411111******1111"]
    assert "4111111111111111" not in str(frame.rows())


def test_empty_batch_gives_an_empty_frame_with_the_schema() -> None:
    """No events give a zero-row frame that still has every column and dtype."""
    frame = events_frame([])
    assert frame.height == 0
    assert frame.schema == pl.Schema(EVENT_SCHEMA)
