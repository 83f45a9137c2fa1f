"""Device status events: the contract, the book's event-time ordering, the consumer on a real broker."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from confluent_kafka import Producer
from jsonschema import Draft202012Validator

from monitor.config import KafkaSettings
from monitor.health.device_status import (
    DeviceStatusBook,
    DeviceStatusEvent,
    StatusConsumer,
    decode_status_batch,
)
from monitor.kafka.clients import ensure_topics
from monitor.paths import schema_path
from monitor.testing.fixtures import wait_until
from simulators.fleet import build_fleet
from simulators.sources.terminal_status import default_status_scenarios, status_events
from tests.helpers import read_topic

PAN = "4111111111111111"


def status(event_id: str, **fields: Any) -> dict[str, Any]:
    """A valid device status event dict; ``fields`` override the defaults."""
    base: dict[str, Any] = {"event_id": event_id, "occurred_at": "2026-03-02T10:15:00+01:00",
                            "terminal_id": "ATM00042", "component": "cassette", "state": "low"}
    base.update(fields)
    return base


def encode(value: dict[str, Any]) -> bytes:
    """JSON bytes as a producer would send them."""
    return msgspec.json.encode(value)


GOOD = {
    "minimal": status("s-1"),
    "all fields": status("s-2", component="card_reader", state="fault", severity="critical",
                         detail="XFS IDC WFS_STAT_DEVHWERROR", model="NCR SelfServ 84"),
    "network offline": status("s-3", component="network", state="offline"),
    "printer out of paper": status("s-4", component="receipt_printer", state="empty",
                                   occurred_at="2026-03-02T09:15:00.5Z"),
}
BAD = {
    "invalid_json": b'{"event_id": "s-',
    "invalid_utf8": b'{"event_id": "\xff"}',
    "not_an_object": b"[1]",
    "missing_field": encode({k: v for k, v in status("s").items() if k != "component"}),
    "naive_timestamp": encode(status("s", occurred_at="2026-03-02T10:15:00")),
    "invalid_field": encode(status("s", state="jammed")),
    "invalid_state": encode(status("s", component="pin_pad", state="low")),
    "pan_in_field": encode(status("s", detail=f"card {PAN} captured")),
}


@pytest.mark.parametrize("name", list(GOOD))
def test_valid_events_decode_and_match_the_schema(name: str) -> None:
    """Each valid example decodes to an event and validates against the JSON Schema."""
    decoded = decode_status_batch([encode(GOOD[name])])
    assert decoded.rejections == [] and len(decoded.events) == 1
    schema = json.loads(schema_path("terminal-status.v1.json").read_text(encoding="utf-8"))
    Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(GOOD[name])


@pytest.mark.parametrize("reason", list(BAD))
def test_bad_messages_are_rejected_with_their_reason(reason: str) -> None:
    """Each broken message is a rejection with the expected reason; its neighbours still decode."""
    decoded = decode_status_batch([encode(GOOD["minimal"]), BAD[reason], None])
    assert [r.reason for r in decoded.rejections] == [reason, "invalid_json"]
    assert [r.index for r in decoded.rejections] == [1, 2]
    assert decoded.indices == [0]
    assert all(PAN not in r.detail for r in decoded.rejections)


@pytest.mark.parametrize("reason", ["missing_field", "invalid_field", "invalid_state"])
def test_the_schema_rejects_what_the_decoder_rejects(reason: str) -> None:
    """The JSON Schema refuses the same contract breaks as the decoder."""
    schema = json.loads(schema_path("terminal-status.v1.json").read_text(encoding="utf-8"))
    assert not Draft202012Validator(schema).is_valid(json.loads(BAD[reason]))


def event(event_id: str, at: str, state: str = "low", **fields: Any) -> DeviceStatusEvent:
    """A decoded event at an RFC 3339 time."""
    return msgspec.json.decode(encode(status(event_id, occurred_at=at, state=state, **fields)),
                               type=DeviceStatusEvent)


def test_an_older_event_never_overwrites_a_newer_one() -> None:
    """'empty' at 10:20 stays when a late 'low' from 10:10 arrives afterwards."""
    book = DeviceStatusBook()
    assert book.apply([event("e2", "2026-03-02T10:20:00+01:00", "empty")])
    assert book.apply([event("e1", "2026-03-02T10:10:00+01:00", "low")]) == []
    held = book.get("ATM00042", "cassette")
    assert held is not None and held.state == "empty" and held.severity == "critical"
    assert held.occurred_at == datetime(2026, 3, 2, 9, 20, tzinfo=UTC)


def test_a_batch_in_any_order_ends_in_its_latest_state_and_reports_real_changes() -> None:
    """Out-of-order events in one batch end in the newest; a repeat of the same state is no change."""
    book = DeviceStatusBook()
    changed = book.apply([
        event("c", "2026-03-02T10:30:00+01:00", "ok", component="card_reader"),
        event("a", "2026-03-02T10:00:00+01:00", "fault", component="card_reader"),
        event("n", "2026-03-02T10:05:00+01:00", "offline", component="network"),
    ])
    assert [e.event_id for e in changed] == ["n", "c"]
    assert book.apply([event("c2", "2026-03-02T10:40:00+01:00", "ok", component="card_reader")]) == []
    assert [(t, c, s.state) for t, c, s in book.not_ok()] == [("ATM00042", "network", "offline")]
    assert set(book.components("ATM00042")) == {"card_reader", "network"}
    book.forget({"ATM00042"})
    assert len(book) == 0


def test_severity_defaults_from_the_state_unless_given() -> None:
    """A 'low' cassette is a warning by default; the producer may say otherwise."""
    book = DeviceStatusBook()
    book.apply([event("x", "2026-03-02T10:00:00Z", "low"),
                event("y", "2026-03-02T10:00:00Z", "low", component="receipt_printer", severity="info")])
    assert book.get("ATM00042", "cassette").severity == "warning"  # type: ignore[union-attr]
    assert book.get("ATM00042", "receipt_printer").severity == "info"  # type: ignore[union-attr]


async def test_consumer_updates_the_book_and_dead_letters_bad_messages(
        kafka_bootstrap: str, unique_name: str) -> None:
    """Valid status events update the book; every bad one reaches the DLQ with its reason, PAN-free."""
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=f"status-{unique_name}",
                             dead_letter_topic=f"status-dlq-{unique_name}",
                             group_id=f"g-{unique_name}", batch_timeout_ms=100)
    await ensure_topics(settings, partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    stream = [
        encode(status("s-1", occurred_at="2026-03-02T10:00:00Z", state="low")),
        *BAD.values(),
        encode(status("s-2", occurred_at="2026-03-02T10:05:00Z", state="empty")),
        encode(status("s-3", terminal_id="POS00007", component="card_reader", state="fault",
                      occurred_at="2026-03-02T10:01:00Z")),
    ]
    for value in stream:  # key = terminal ID: one terminal's events stay in order on a partition
        key = b"POS00007" if b"POS00007" in value else b"ATM00042"
        producer.produce(settings.topic, value=value, key=key)
    assert producer.flush(10) == 0

    book = DeviceStatusBook()
    changes: list[str] = []
    consumer = StatusConsumer(settings, book=book,
                              on_change=lambda events: changes.extend(e.event_id for e in events))
    await consumer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await wait_until(lambda: consumer.events == 3 and consumer.batches >= 1, what="valid events")
        dead = await read_topic(kafka_bootstrap, settings.dead_letter_topic, expected=len(BAD))
    finally:
        stop.set()
        await task
        await consumer.stop()

    assert book.get("ATM00042", "cassette").state == "empty"  # type: ignore[union-attr]
    assert book.get("POS00007", "card_reader").state == "fault"  # type: ignore[union-attr]
    assert "s-3" in changes and "s-2" in changes
    assert sorted(dict(r.headers)["cardmon-reason"].decode() for r in dead) == sorted(BAD)
    for record in dead:
        headers = dict(record.headers)
        assert headers["cardmon-source-topic"].decode() == settings.topic
        assert PAN.encode() not in record.value


def test_simulated_device_trouble_decodes_and_ends_in_the_expected_states() -> None:
    """The synthetic fleet's status scenarios are valid events; at 55 % the book shows the trouble."""
    fleet = build_fleet(terminals=10, customers=50, vips=4, managers=2)
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    events = list(status_events(default_status_scenarios(fleet, 100.0), start=start))
    decoded = decode_status_batch([encode(e) for e in events])
    assert decoded.rejections == [] and len(decoded.events) == len(events) == 7
    book = DeviceStatusBook()
    book.apply([e for e in decoded.events if e.occurred_at <= datetime(2026, 3, 2, 9, 0, 55, tzinfo=UTC)])
    states = sorted((c, s.state) for _, c, s in book.not_ok())
    assert states == [("card_reader", "fault"), ("cassette", "empty"), ("network", "offline")]
    book.apply(decoded.events)
    assert book.not_ok() == []


def test_a_status_from_a_device_clock_in_the_future_is_rejected() -> None:
    """A status stamped far ahead (a wrong device clock) is dead-lettered: it could pin a terminal offline."""
    future = status("s-fut", component="network", state="offline", occurred_at="2099-01-01T00:00:00Z")
    near = status("s-near", component="network", state="ok",
                  occurred_at=datetime.now(UTC).isoformat(timespec="seconds"))
    batch = decode_status_batch([encode(future), encode(near)])
    assert [(r.index, r.reason) for r in batch.rejections] == [(0, "invalid_field")]
    assert "future" in batch.rejections[0].detail
    assert [e.event_id for e in batch.events] == ["s-near"]
