"""decode_frame (column checks, fast path) gives exactly what decode_batch + events_frame give."""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from monitor.domain import TransactionEvent
from monitor.pipeline import decoder
from monitor.pipeline.batch_frame import EVENT_SCHEMA, events_frame
from monitor.pipeline.column_checks import (
    CHECK_ONLY_COLUMNS,
    FIELD_PATTERNS,
    check_columns,
    unchecked_decoder,
)
from monitor.pipeline.decoder import decode_batch, decode_frame

PAN = "4111111111111111"  # Visa test PAN, Luhn-valid
AMEX = "378282246310005"


def message(index: int, **changes: Any) -> dict[str, Any]:
    """A valid contract-v1 event with every optional field filled in."""
    event: dict[str, Any] = {
        "event_id": f"syn7-1772445600-{index:08d}",
        "occurred_at": "2026-03-02T10:15:00.250+01:00",
        "channel": "POS",
        "terminal_id": "PSXB0431",
        "txn_type": "purchase",
        "amount_minor": 5634,
        "currency": "EUR",
        "card_ref": "tok_760795856930a8d3",
        "status": "completed",
        "response_code": "00",
        "merchant_id": "481970464790429",
        "merchant_name": "CARREFOUR CITY STRASBOURG FR",
        "pan_masked": "535522******8973",
        "customer_id": "C0011442",
        "latency_ms": 426.7,
        "entry_mode": "contactless",
        "city": "Strasbourg",
        "region": "Provence-Alpes-Côte d'Azur",
        "branch_id": "STR-01",
        "mti": "0100",
        "stan": "009048",
        "rrn": "606110009048",
        "processing_code": "000000",
    }
    event.update(changes)
    return event


# Values a hostile or broken producer might put in a field. Each is tried in every text
# field, and the field-specific ones in their own field.
HOSTILE_TEXT = [
    PAN, f"x{PAN}y", f"ref {PAN}", "4111 1111 1111 1111", "4111-1111-1111-1111", AMEX,
    "3782 822463 10005", "4111 1111 1111 1111 123", "4111111111111112", "41111111111111111111111",
    "4111111111111111\n", "a\nb", "a\rb", "tab\there", "nul\x00", "del\x7f", "c1\x85", "ls\u2028",
    "ps\u2029", "esc\x1b[2J", "unit\x1fsep", " ", "é", "x" * 128, "x" * 129, "", "😀",
    "5274 5763 9425 9961", "20240101-000123", "1234567890123", "123456789012", "12345678901234567890",
    "-727612092139916043", "3527213246127876953", "4111 1111 1111 1111 1", "4111-1111 1111-1111",
    # PAN forms of issue 8: dots, Unicode spaces, other digit scripts, invisibles, tokens.
    "4111.1111.1111.1111", "4111\u00a01111\u00a01111\u00a01111", "4111\u2009-\u20091111 1111 1111",
    "\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11",
    "\u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661",
    "41\u200b11111111111111", f"tok_{PAN}", "abc4111-1111-1111-1111xyz", "4111\u30fb1111\u30fb1111\u30fb1111",
    "\u2074111111111111111", "sw-2026-03-02-000912", "+49 1512 3456 7890", "2026-03-02",
    "0123456789abcdef0123" + PAN + "abcdef", "0123456789abcdef" + PAN + "abcdef0123456789abcdef0123456789",
    "caf\u00e9 du port", "cafe\u0301", "a  b", " a", "a ",
    "a\u00a0b", "bidi\u202etxt", "zw\u200bj", "soft\u00adhyphen", "\u3000", "x" * 127 + "\n",
    "1234\u00a05678", "4111 1111 1111 1111", "4111" + "\u200d" * 40 + "111111111111",
    "4111    1111    1111    1111", "CARREFOUR CITY      LYON          FR", "  ", "\u00a0x\u00a0",
    "x\u2003\u2003y", "4111\u00a0\u00a0\u00a0\u00a01111 1111 1111",
    # Hex strings (the identity fields' exception) next to real PANs.
    "a4111111111111", "tok_70768005956542de", "x70768005956542de", "70768005956542de-beef",
    "dead4111111111111111", "0123456789abcdef4111111111111111 4111111111111111",
    "dead4111\u0301111111111111", "beef-4111-1111-1111-1111", "cafe4111 1111 1111 1111",
    "4111111111111111abc def0", "a4111111111111111b-c4111111111111111",
]
HOSTILE_FIELD: dict[str, list[Any]] = {
    "currency": ["EUR", "eur", "XYZ", "EUR\n", "EURO", "", 978, None, "XTS", "USN"],
    "response_code": ["05", "N7", "n7", "5", "05\n", "00 ", None, 5, "99", "ZZ"],
    "pan_masked": ["411111******1111", "411111XXXXXX1111", PAN, "411111******1111\n", "411111**1111", None, ""],
    "mti": ["0100", "100", "0100\n", "01000", "abcd", None, 100],
    "stan": ["000001", "123", "000001\n", "0000001", None],
    "rrn": ["ABC123def456", "ABC123def45", "ABC123def456\n", "ABC123def45!", None],
    "processing_code": ["000000", "00000", "000000\n", None],
    "terminal_id": ["ATM00042", "ATM 42", "T" * 16, "T" * 17, "ATM\n", "ATM42\n", "ÄTM", "", 42],
    "card_ref": [PAN, "4111 1111 1111 1111", "4111-1111-1111-1111", f"{PAN}\n", "4111111111111112",
                 "0000000000000", "tok_1", "", "1 2 3", "-", AMEX, f" {PAN} "],
    "occurred_at": ["2026-03-02T10:15:00Z", "2026-03-02T10:15:00", "1969-12-31T23:59:59.999999Z",
                    "1970-01-01T00:00:00Z", "2099-12-31T23:59:59.999999Z", "2100-01-01T00:00:00Z",
                    "2100-01-01T00:59:59+01:00", "1970-01-01T00:59:59+01:00", "0001-01-01T00:00:00+14:00",
                    "9999-12-31T23:59:59-14:00", "2026-03-02t10:15:00z", "2026-03-02 10:15:00Z",
                    "2026-03-02T10:15:00+0100", "2016-12-31T23:59:60Z", "2024-02-30T00:00:00Z",
                    "2026-03-02T10:15:00.123456789Z", "yesterday", 1709284500, None],
    "status": ["completed", "timeout", "pending", None],
    "channel": ["ATM", "KIOSK", PAN, None],
    "amount_minor": [0, 10**15, 10**15 + 1, -1, 1.0, "1", True, None],
    "latency_ms": [0, 12, 3_600_000, 3_600_001, -1, "1", float("nan"), None],
    "entry_mode": ["chip", "tap", None],
    "decline_reasons": [["Bad PIN"], [f"card {PAN} refused"], [""], [], None, ["a\nb"], "Bad PIN"],
    "pan": [PAN, "4111 1111 1111 1111", "12345", "", None, 4111, 4111111111111111, 4111.5, True,
            ["4111"], {"n": PAN}, "4111111111111112"],
}
RAW = [None, b"", b"{", b"[]", b'"x"', b"null", b"\xff\xfe", b'{"event_id": "\xff"}', b" {} ",
       b"[" * 10_000, b'{"a": ' * 5000, b"1", b"{}\n{}"]


def hostile(rng: random.Random, index: int) -> bytes | None:
    """One message: mostly valid, with zero to three hostile changes, or raw garbage."""
    draw = rng.random()
    if draw < 0.03:
        return rng.choice(RAW)
    event = message(index)
    for _ in range(rng.choice([0, 0, 1, 1, 1, 2, 3])):
        if rng.random() < 0.4:
            name = rng.choice(["event_id", "terminal_id", "customer_id", "city", "region",
                               "branch_id", "merchant_id", "merchant_name", "card_ref",
                               "pan_masked"])
            event[name] = rng.choice(HOSTILE_TEXT)
        elif rng.random() < 0.1:
            event.pop(rng.choice(list(event)))
        else:
            name = rng.choice(list(HOSTILE_FIELD))
            event[name] = rng.choice(HOSTILE_FIELD[name])
    if rng.random() < 0.05:
        return json.dumps(event, indent=1).encode()  # newlines between tokens
    return json.dumps(event).encode()


def assert_same(values: list[bytes | None]) -> None:
    reference = decode_batch(values)
    fast = decode_frame(values)
    assert fast.rejections == reference.rejections
    assert fast.indices == reference.indices
    assert fast.sanitised == reference.sanitised
    assert_frame_equal(fast.frame, events_frame(reference.events))


@pytest.mark.parametrize("seed", range(8))
def test_random_hostile_batches_decode_identically(seed: int) -> None:
    """Random batches of valid and hostile messages give the reference's frame, indices and rejections."""
    rng = random.Random(seed)
    for size in (0, 1, 2, 7, 50, 400):
        assert_same([hostile(rng, n) for n in range(size)])


@pytest.mark.parametrize("name", ["event_id", "terminal_id", "customer_id", "city", "region",
                                  "branch_id", "merchant_id", "merchant_name", "card_ref"])
def test_every_hostile_text_in_every_field_decodes_identically(name: str) -> None:
    """Each hostile text value in each text field gives the reference's result, neighbours unaffected."""
    values = [json.dumps(message(n, **{name: text})).encode() for n, text in enumerate(HOSTILE_TEXT)]
    assert_same(values + [json.dumps(message(999)).encode()])


@pytest.mark.parametrize("name", list(HOSTILE_FIELD))
def test_every_hostile_field_value_decodes_identically(name: str) -> None:
    """Each hostile value of a checked field gives the reference's result."""
    values = [json.dumps(message(n, **{name: value})).encode()
              for n, value in enumerate(HOSTILE_FIELD[name])]
    assert_same(values)


def test_valid_batch_is_the_reference_frame() -> None:
    """A batch of valid messages decodes to the reference frame with no rejection."""
    values = [json.dumps(message(n, latency_ms=n / 10)).encode() for n in range(300)]
    fast = decode_frame(values)
    assert fast.rejections == [] and fast.indices == list(range(300))
    assert fast.frame.schema == pl.Schema(EVENT_SCHEMA)
    assert_same(values)


def test_raw_pan_never_reaches_the_frame() -> None:
    """A raw PAN is masked in the frame and reported, never kept, through the fast path too."""
    values = [json.dumps(message(0, pan=PAN, pan_masked=None)).encode(), json.dumps(message(1)).encode()]
    fast = decode_frame(values)
    assert [(r.index, r.reason) for r in fast.rejections] == [(0, "raw_pan")]
    assert PAN not in str(fast.frame.rows())
    assert fast.frame.get_column("pan_masked").to_list() == ["411111******1111", "535522******8973"]


def test_column_patterns_are_the_event_patterns() -> None:
    """The fast path checks exactly the string patterns declared on TransactionEvent."""
    declared = {}
    for info in msgspec.structs.fields(TransactionEvent):
        text = repr(info.type)
        if "pattern=" in text:
            declared[info.name] = text
    assert set(FIELD_PATTERNS) == set(declared)
    for name, pattern in FIELD_PATTERNS.items():
        assert repr(pattern) in declared[name]


def test_padded_descriptive_fields_stay_on_the_fast_path() -> None:
    """Fixed-width, space-padded names (ISO 8583 field 43) are collapsed per column, not sent to Python."""
    padded = {"merchant_name": "CARREFOUR CITY      LYON          FR", "city": " Lyon ",
              "region": "Auvergne\u00a0Rh\u00f4ne-Alpes", "branch_id": "LYO  01"}
    values = [json.dumps(message(n, **padded)).encode() for n in range(20)]
    rows = [unchecked_decoder.decode(v) for v in values]
    suspect, cleaned = check_columns(events_frame(rows, extra=CHECK_ONLY_COLUMNS))
    assert not suspect.any()
    assert cleaned.row(0, named=True)["merchant_name"] == "CARREFOUR CITY LYON FR"
    fast = decode_frame(values)
    assert fast.sanitised == {(name, "text"): 20 for name in padded}
    assert_same(values)


@pytest.fixture
def column_checks_always(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sends every batch, however small, through the column checks (no reference-only path)."""
    monkeypatch.setattr(decoder, "REFERENCE_BATCH_MAX", 0)


@pytest.mark.parametrize("seed", range(8))
def test_small_hostile_batches_through_the_column_checks_decode_identically(
        seed: int, column_checks_always: None) -> None:
    """Batches small enough for the reference alone give the reference's result through the column checks too."""
    test_random_hostile_batches_decode_identically(seed)


@pytest.mark.parametrize("name", ["event_id", "terminal_id", "customer_id", "city", "region",
                                  "branch_id", "merchant_id", "merchant_name", "card_ref"])
def test_hostile_texts_through_the_column_checks_decode_identically(
        name: str, column_checks_always: None) -> None:
    """Each hostile text in each text field gives the reference's result through the column checks."""
    test_every_hostile_text_in_every_field_decodes_identically(name)


@pytest.mark.parametrize("name", list(HOSTILE_FIELD))
def test_hostile_field_values_through_the_column_checks_decode_identically(
        name: str, column_checks_always: None) -> None:
    """Each hostile value of a checked field gives the reference's result through the column checks."""
    test_every_hostile_field_value_decodes_identically(name)


def test_raw_pan_never_reaches_the_frame_through_the_column_checks(column_checks_always: None) -> None:
    """A raw PAN is masked and reported through the column-check path too."""
    test_raw_pan_never_reaches_the_frame()


def test_a_small_batch_is_the_reference_result() -> None:
    """A batch of at most REFERENCE_BATCH_MAX messages decodes exactly as decode_batch says."""
    rng = random.Random(99)
    values = [hostile(rng, n) for n in range(decoder.REFERENCE_BATCH_MAX)]
    assert_same(values)
    assert_same(values[:1])
