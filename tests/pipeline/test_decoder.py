"""Tests for the batch decoder: every kind of bad input, PAN handling and scrubbing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from monitor.pipeline.decoder import decode_batch
from monitor.privacy import is_pan, mask_pan, scrub_pans

PAN = "4111111111111111"  # Visa test PAN, Luhn-valid
PAN_MASKED = "411111******1111"
DROP = object()


def message(**changes: Any) -> dict[str, Any]:
    """A valid contract-v1 event as a dict; ``DROP`` removes a field."""
    event: dict[str, Any] = {
        "event_id": "evt-0001",
        "occurred_at": "2024-03-01T09:15:00.250+01:00",
        "channel": "ATM",
        "terminal_id": "ATM00042",
        "txn_type": "withdrawal",
        "amount_minor": 10_000,
        "currency": "EUR",
        "card_ref": "tok_8f3a2c",
        "status": "completed",
        "response_code": "00",
        "merchant_id": "BANKATM000000001",
        "latency_ms": 182.5,
        "stan": "000123",
        "rrn": "406109123456",
    }
    for key, value in changes.items():
        if value is DROP:
            event.pop(key, None)
        else:
            event[key] = value
    return event


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


GOOD = encode(message())

# (bad message value, expected rejection reason)
BAD: dict[str, tuple[bytes | None, str]] = {
    "truncated JSON": (GOOD[:-7], "invalid_json"),
    "empty value": (b"", "invalid_json"),
    "tombstone": (None, "invalid_json"),
    "invalid UTF-8": (GOOD.replace(b"ATM00042", b"ATM\xff0042"), "invalid_utf8"),
    "JSON array": (b"[" + GOOD + b"]", "not_an_object"),
    "JSON string": (b'"hello"', "not_an_object"),
    "missing terminal_id": (encode(message(terminal_id=DROP)), "missing_field"),
    "missing occurred_at": (encode(message(occurred_at=DROP)), "missing_field"),
    "amount as string": (encode(message(amount_minor="100.00")), "invalid_field"),
    "amount as float": (encode(message(amount_minor=100.5)), "invalid_field"),
    "negative amount": (encode(message(amount_minor=-1)), "invalid_field"),
    "amount above 10^15": (encode(message(amount_minor=10**15 + 1)), "invalid_field"),
    "non-finite amount": (GOOD.replace(b"10000", b"1e999"), "invalid_field"),
    "unknown channel": (encode(message(channel="KIOSK")), "invalid_field"),
    "lower-case currency": (encode(message(currency="eur")), "invalid_field"),
    "bad response code": (encode(message(response_code="5")), "invalid_field"),
    "status unknown": (encode(message(status="pending")), "invalid_field"),
    "terminal_id with space": (encode(message(terminal_id="ATM 42")), "invalid_field"),
    "latency negative": (encode(message(latency_ms=-3)), "invalid_field"),
    "not a timestamp": (encode(message(occurred_at="yesterday")), "invalid_field"),
    "naive timestamp": (encode(message(occurred_at="2024-03-01T09:15:00")), "naive_timestamp"),
    "unknown currency": (encode(message(currency="XYZ")), "unknown_currency"),
    "completed without code": (encode(message(response_code=DROP)), "response_code_required"),
    "completed with null code": (encode(message(response_code=None)), "response_code_required"),
    "PAN as card_ref": (encode(message(card_ref=PAN)), "pan_in_card_ref"),
    "spaced PAN as card_ref": (encode(message(card_ref="4111 1111 1111 1111")), "pan_in_card_ref"),
    "dashed PAN as card_ref": (encode(message(card_ref="4111-1111-1111-1111")), "pan_in_card_ref"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_message_is_rejected_and_neighbours_still_decode(case: str) -> None:
    """A bad message becomes one rejection with its reason; the good messages around it decode."""
    value, reason = BAD[case]
    before, after = encode(message(event_id="before")), encode(message(event_id="after"))
    batch = decode_batch([before, value, after])
    assert [(r.index, r.reason) for r in batch.rejections] == [(1, reason)]
    assert batch.rejections[0].detail
    assert [event.event_id for event in batch.events] == ["before", "after"]
    assert batch.indices == [0, 2]


def test_valid_event_decodes_with_types_and_units() -> None:
    """A valid message decodes to an event with integer minor units and an aware timestamp."""
    (event,) = decode_batch([GOOD]).events
    assert event.amount_minor == 10_000 and isinstance(event.amount_minor, int)
    assert event.occurred_at == datetime(2024, 3, 1, 8, 15, 0, 250_000, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(hours=1)
    assert event.response_code == "00"
    assert event.status == "completed"


def test_timeout_without_response_code_is_valid() -> None:
    """A timeout carries no response code and is still a valid event."""
    batch = decode_batch([encode(message(status="timeout", response_code=DROP))])
    assert batch.rejections == []
    (event,) = batch.events
    assert (event.status, event.response_code) == ("timeout", None)


def test_unknown_fields_are_ignored() -> None:
    """A field added by a newer producer does not break decoding (forward compatible)."""
    batch = decode_batch([encode(message(acquirer_country="BE", mcc="6011"))])
    assert batch.rejections == [] and len(batch.events) == 1


def test_whole_batch_keeps_order_and_indices() -> None:
    """A mixed batch yields events in input order with their input positions."""
    values = [encode(message(event_id=f"e{n}")) if n % 3 else b"{" for n in range(12)]
    batch = decode_batch(values)
    assert batch.indices == [n for n in range(12) if n % 3]
    assert [event.event_id for event in batch.events] == [f"e{n}" for n in batch.indices]
    assert [r.index for r in batch.rejections] == [0, 3, 6, 9]


def test_raw_pan_is_masked_dropped_and_reported() -> None:
    """A raw PAN in `pan` is masked into pan_masked, dropped, and reported without the PAN."""
    batch = decode_batch([encode(message(pan=PAN))])
    (event,) = batch.events
    assert event.pan_masked == PAN_MASKED
    assert event.raw_pan is None
    assert PAN not in repr(event)
    assert PAN.encode() not in msgspec.json.encode(event)
    assert b'"pan"' not in msgspec.json.encode(event)
    (rejection,) = batch.rejections
    assert rejection.reason == "raw_pan"
    assert PAN not in rejection.detail


def test_raw_pan_keeps_the_producers_masked_pan() -> None:
    """When the producer sent both, its own pan_masked is kept and the raw PAN dropped."""
    batch = decode_batch([encode(message(pan=PAN, pan_masked="411111XXXXXX1111"))])
    (event,) = batch.events
    assert event.pan_masked == "411111XXXXXX1111"
    assert PAN not in repr(event)


def test_raw_pan_on_an_invalid_event_is_rejected_without_the_pan() -> None:
    """An otherwise invalid event with a raw PAN is one rejection that names both problems."""
    batch = decode_batch([encode(message(pan=PAN, currency="XYZ"))])
    assert batch.events == []
    (rejection,) = batch.rejections
    assert rejection.reason == "unknown_currency"
    assert "raw PAN" in rejection.detail and PAN not in rejection.detail


@pytest.mark.parametrize("field", ["channel", "txn_type", "entry_mode", "status"])
def test_rejection_detail_never_carries_a_pan(field: str) -> None:
    """A PAN sent in an enum field is rejected without echoing the PAN in the detail."""
    batch = decode_batch([encode(message(**{field: PAN}))])
    (rejection,) = batch.rejections
    assert rejection.reason == "invalid_field"
    assert PAN not in rejection.detail
    assert PAN_MASKED in rejection.detail


def test_non_pan_card_ref_is_accepted() -> None:
    """A digit card_ref that fails Luhn (a token) is accepted."""
    batch = decode_batch([encode(message(card_ref="4111111111111112"))])
    assert batch.rejections == [] and batch.events[0].card_ref == "4111111111111112"


def test_offset_forms_are_accepted() -> None:
    """Z, +00:00 and -05:00 offsets are all timezone-aware and accepted."""
    stamps = ["2024-03-01T08:15:00Z", "2024-03-01T08:15:00+00:00", "2024-03-01T03:15:00-05:00"]
    batch = decode_batch([encode(message(occurred_at=stamp)) for stamp in stamps])
    assert batch.rejections == []
    assert {event.occurred_at for event in batch.events} == {
        datetime(2024, 3, 1, 8, 15, tzinfo=UTC)
    }


def test_is_pan_and_mask_pan() -> None:
    """is_pan needs 13-19 Luhn-valid digits; mask_pan shows first six and last four."""
    assert is_pan(PAN) and is_pan("378282246310005")  # Amex test PAN, 15 digits
    assert not is_pan("4111111111111112") and not is_pan("411111111111") and not is_pan("abc")
    assert mask_pan("4111 1111 1111 1111") == PAN_MASKED
    assert mask_pan("378282246310005") == "378282*****0005"
    assert mask_pan("12345") is None


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        (b'{"pan":"4111111111111111"}', b'{"pan":"411111******1111"}'),
        (b"card 4111 1111 1111 1111 declined", b"card 411111******1111 declined"),
        (b"card 4111-1111-1111-1111.", b"card 411111******1111."),
        (b"amex 378282246310005", b"amex 378282*****0005"),
        (b"ref 99 4111111111111111", b"ref 99 411111******1111"),
        (b"4111111111111111 12 25", b"411111******1111 12 25"),
    ],
)
def test_scrub_pans_masks_luhn_valid_pans(text: bytes, scrubbed: bytes) -> None:
    """Luhn-valid PANs, plain, spaced, dashed or next to short digit groups, are masked."""
    assert scrub_pans(text) == scrubbed


@pytest.mark.parametrize(
    "text",
    [
        b'{"card_ref":"4111111111111112"}',  # fails Luhn
        b'{"stan":"000123","rrn":"406109123456"}',  # too short
        b"id 41111111111111111111111",  # 23 digits: longer than any PAN
        b"phone +32 2 555 12 34",
    ],
)
def test_scrub_pans_leaves_other_digit_runs(text: bytes) -> None:
    """Digit runs that are not Luhn-valid PAN-length numbers are left unchanged."""
    assert scrub_pans(text) == text


def test_scrub_pans_on_a_rejected_value_removes_the_pan() -> None:
    """A rejected message that carried a PAN can be scrubbed before the dead-letter topic."""
    value = encode(message(pan=PAN, currency="XYZ"))
    assert PAN.encode() not in scrub_pans(value)
    assert PAN_MASKED.encode() in scrub_pans(value)


@pytest.mark.parametrize(("changes", "reason"), [
    ({"terminal_id": PAN}, "pan_in_field"),
    ({"event_id": f"evt-{PAN}"}, "pan_in_field"),
    ({"customer_id": PAN}, "pan_in_field"),
    ({"merchant_id": PAN}, "pan_in_field"),
    ({"card_ref": f"tok_{PAN}"}, "pan_in_card_ref"),
    ({"card_ref": "4111.1111.1111.1111"}, "pan_in_card_ref"),
    ({"customer_id": "C-\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11"},
     "pan_in_field"),
    ({"card_ref": "tok\x00"}, "invalid_field"),
    ({"event_id": "evt\u202e1"}, "invalid_field"),
    ({"stan": "000123\n"}, "invalid_field"),
    ({"merchant_id": "M1\nManager: call +1-900-SCAM"}, "invalid_field"),
    ({"occurred_at": "2999-01-01T00:00:00+00:00"}, "invalid_field"),
    ({"occurred_at": "0001-01-01T00:00:00+14:00"}, "invalid_field"),
])
def test_pans_control_characters_and_absurd_times_are_rejected(changes: dict[str, Any], reason: str) -> None:
    """A PAN or a control character in an identity field, or an impossible time, is dead-lettered."""
    batch = decode_batch([encode(message(**changes)), encode(message(event_id="evt-ok"))])
    assert [(r.index, r.reason) for r in batch.rejections] == [(0, reason)]
    assert [e.event_id for e in batch.events] == ["evt-ok"]
    assert PAN not in batch.rejections[0].detail


@pytest.mark.parametrize(("changes", "cleaned"), [
    ({"city": "Lyon 4111-1111-1111-1111"}, {"city": f"Lyon {PAN_MASKED}"}),
    ({"region": "4111 1111 1111 1111"}, {"region": PAN_MASKED}),
    ({"branch_id": PAN}, {"branch_id": PAN_MASKED}),
    ({"decline_reasons": [f"card {PAN} refused", "Bad PIN"]},
     {"decline_reasons": [f"card {PAN_MASKED} refused", "Bad PIN"]}),
    ({"city": "Lyon\u001b[2J"}, {"city": "Lyon [2J"}),
    ({"merchant_name": "CAFE DU\nPORT  LYON\u2028FR "}, {"merchant_name": "CAFE DU PORT LYON FR"}),
    ({"city": "\n"}, {"city": None}),
])
def test_descriptive_fields_are_cleaned_and_the_event_processed(changes: dict[str, Any],
                                                               cleaned: dict[str, Any]) -> None:
    """A PAN or a control character in a descriptive field is masked or cleaned, and the event kept."""
    batch = decode_batch([encode(message(**changes))])
    assert batch.rejections == []
    (event,) = batch.events
    for name, value in cleaned.items():
        assert getattr(event, name) == value
    assert sum(batch.sanitised.values()) >= 1


def test_long_signed_merchant_ids_are_not_taken_for_pans() -> None:
    """TabFormer's 19-digit merchant IDs (longer than ISO 8583 field 42) are kept as they are."""
    batch = decode_batch([encode(message(merchant_id="3527213246127876953")),
                          encode(message(merchant_id="-727612092139916043"))])
    assert batch.rejections == []
    assert [e.merchant_id for e in batch.events] == ["3527213246127876953", "-727612092139916043"]


@pytest.mark.parametrize("value", [
    "\uff14" + "\uff11" * 15, "4111.1111.1111.1111", "4111\u00a01111\u00a01111\u00a01111",
    "tok_4111111111111111", "41\u200b11111111111111",
])
def test_rejection_details_echo_no_pan_form(value: str) -> None:
    """msgspec echoes a bad enum value; the detail masks it in every PAN form."""
    batch = decode_batch([encode(message(channel=value)), encode(message(txn_type=value))])
    assert [r.reason for r in batch.rejections] == ["invalid_field", "invalid_field"]
    for rejection in batch.rejections:
        assert "411111" in rejection.detail  # the mask is there, the middle digits are not
        assert "4111111111111111" not in rejection.detail.replace("\u200b", "")
        assert value not in rejection.detail
