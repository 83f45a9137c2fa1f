"""The JSON Schema of contract v1 and the decoder agree on good and bad messages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from jsonschema import Draft202012Validator

from monitor.domain import TransactionEvent
from monitor.paths import schema_path
from monitor.pipeline.contract import (
    DESCRIPTIVE_FIELDS,
    FORBIDDEN_IN_IDENTITY_CLASS,
    IDENTITY_FIELDS,
)
from monitor.pipeline.decoder import decode_batch

DROP = object()


def message(**changes: Any) -> dict[str, Any]:
    """A valid contract-v1 event; ``DROP`` removes a field."""
    event: dict[str, Any] = {
        "event_id": "evt-1",
        "occurred_at": "2024-03-01T09:15:00Z",
        "channel": "POS",
        "terminal_id": "POS00007",
        "txn_type": "purchase",
        "amount_minor": 2599,
        "currency": "EUR",
        "card_ref": "tok_5d1e",
        "response_code": "05",
    }
    for key, value in changes.items():
        if value is DROP:
            event.pop(key, None)
        else:
            event[key] = value
    return event


GOOD: dict[str, dict[str, Any]] = {
    "minimal completed": message(),
    "status completed explicit": message(status="completed"),
    "timeout without code": message(status="timeout", response_code=DROP),
    "timeout with null code": message(status="timeout", response_code=None),
    "offset +05:30 with fraction": message(occurred_at="2024-03-01T14:45:00.123456+05:30"),
    "zero amount": message(amount_minor=0),
    "max amount": message(amount_minor=10**15),
    "network code N7": message(response_code="N7"),
    "all optional fields": message(
        merchant_id="M" * 32,
        pan_masked="411111******1111",
        customer_id="C-1",
        latency_ms=0,
        entry_mode="contactless",
        city="Gent",
        region="VOV",
        branch_id="BR-9",
        decline_reasons=["Bad PIN", "Insufficient Balance"],
        mti="0110",
        stan="000001",
        rrn="ABC123def456",
        processing_code="000000",
    ),
    "optional fields null": message(merchant_id=None, latency_ms=None, entry_mode=None, rrn=None),
    "unknown extra field": message(acquirer_country="BE"),
    "terminal id 16 printable": message(terminal_id="T!~" + "x" * 13),
    "integer latency": message(latency_ms=12),
    # Descriptive fields are cleaned, never rejected for their characters (issue 8).
    "merchant name with a newline": message(merchant_name="CAFE DU PORT\nLYON FR"),
    "city with control and bidi characters": message(city="Lyon\x1b[2J\u202e", region="\t ARA "),
    "branch with a line separator": message(branch_id="LYO\u202801"),
    "blank city": message(city="\n"),
    "descriptive PAN forms are masked": message(
        merchant_name="SHOP 4111.1111.1111.1111", city="\uff14" + "\uff11" * 15,
        decline_reasons=["card 4111 1111 1111 1111 refused", "\u2028"]),
    "identity with non-ASCII letters": message(customer_id="Zoë-∑", event_id="évt-1"),
    "digit groupings that are not card numbers": message(
        event_id="sw-2026-03-02-000912", customer_id="+49 1512 3456 7890", merchant_id="378282246310005"),
    "PAN-like run inside a SHA-256 hex digest": message(
        card_ref="0123456789abcdef" + "4111111111111111" + "abcdef0123456789abcdef0123456789"),
}

BAD: dict[str, dict[str, Any] | list[Any]] = {
    "JSON array": [message()],
    "missing event_id": message(event_id=DROP),
    "empty event_id": message(event_id=""),
    "missing terminal_id": message(terminal_id=DROP),
    "terminal id too long": message(terminal_id="T" * 17),
    "terminal id with space": message(terminal_id="POS 7"),
    "naive timestamp": message(occurred_at="2024-03-01T09:15:00"),
    "date only": message(occurred_at="2024-03-01"),
    "impossible date": message(occurred_at="2024-02-30T09:15:00Z"),
    "leap second": message(occurred_at="2016-12-31T23:59:60Z"),
    "timestamp as number": message(occurred_at=1709284500),
    "unknown channel": message(channel="KIOSK"),
    "unknown txn_type": message(txn_type="payout"),
    "amount as string": message(amount_minor="25.99"),
    "amount with fraction": message(amount_minor=25.99),
    "negative amount": message(amount_minor=-1),
    "amount above 10^15": message(amount_minor=10**15 + 1),
    "amount bool": message(amount_minor=True),
    "currency lower case": message(currency="eur"),
    "currency numeric": message(currency="978"),
    "response code one char": message(response_code="5"),
    "response code lower case": message(response_code="n7"),
    "completed without code": message(response_code=DROP),
    "completed with null code": message(response_code=None),
    "unknown status": message(status="pending"),
    "null status": message(status=None),
    "pan_masked shows too much": message(pan_masked="4111111111111111"),
    "latency negative": message(latency_ms=-1),
    "latency over an hour": message(latency_ms=3_600_001),
    "stan too short": message(stan="123"),
    "empty decline reason": message(decline_reasons=[""]),
    "raw PAN in pan": message(pan="4111111111111111"),
    "raw PAN in pan as a number": message(pan=4111111111111111),
    # Identity fields may not hold a control or invisible character (issue 8).
    "NUL in card_ref": message(card_ref="tok_5d1e\x00"),
    "newline in event_id": message(event_id="evt-1\n"),
    "C1 control in customer_id": message(customer_id="C-1\x85"),
    "bidi override in merchant_id": message(merchant_id="M\u202e77"),
    "zero-width space in customer_id": message(customer_id="C\u200b1"),
    "BOM in event_id": message(event_id="\ufeffevt-1"),
    "trailing newline in stan": message(stan="000123\n"),
    "trailing newline in currency": message(currency="EUR\n"),
    "trailing newline in response_code": message(response_code="05\n"),
    "trailing newline in terminal_id": message(terminal_id="POS00007\n"),
}

# Messages on which the schema and the decoder disagree, on purpose, with the reason.
# (message, decoder accepts, schema accepts, why)
DIFFERENCES: dict[str, tuple[dict[str, Any], bool, bool, str]] = {
    "unknown ISO 4217 code": (
        message(currency="XYZ"), False, True,
        "the decoder checks the code against ISO 4217 (Babel/CLDR); the schema only its shape",
    ),
    "PAN as card_ref": (
        message(card_ref="4111111111111111"), False, True,
        "JSON Schema cannot run the Luhn check that tells a PAN from a digit token",
    ),
    "PAN inside a card_ref token": (
        message(card_ref="tok_4111111111111111"), False, True,
        "JSON Schema cannot run the Luhn check on a run inside a token",
    ),
    "dotted PAN in event_id": (
        message(event_id="evt-4111.1111.1111.1111"), False, True,
        "JSON Schema cannot run the Luhn check on grouped digits",
    ),
    "full-width PAN in customer_id": (
        message(customer_id="\uff14" + "\uff11" * 15), False, True,
        "JSON Schema cannot read other scripts' digits as numbers",
    ),
    "integral float amount": (
        message(amount_minor=2599.0), False, True,
        "JSON Schema's integer accepts 2599.0; the decoder requires a JSON integer literal",
    ),
    "lower-case t and z": (
        message(occurred_at="2024-03-01t09:15:00z"), True, False,
        "msgspec's RFC 3339 parser is case-insensitive; producers must send T and Z",
    ),
    "space instead of T": (
        message(occurred_at="2024-03-01 09:15:00Z"), True, False,
        "msgspec accepts the RFC 3339 section 5.6 space variant; the contract requires T",
    ),
    "offset without colon": (
        message(occurred_at="2024-03-01T10:15:00+0100"), True, False,
        "msgspec accepts +hhmm; RFC 3339 and the contract require +hh:mm",
    ),
}


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    """A draft 2020-12 validator of the shipped schema, with format checking."""
    schema = json.loads(schema_path("transaction-event.v1.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    checker = Draft202012Validator.FORMAT_CHECKER
    assert "date-time" in checker.checkers, "install rfc3339-validator for date-time checks"
    return Draft202012Validator(schema, format_checker=checker)


def decoder_accepts(value: Any) -> bool:
    """Whether the decoder turns the message into an event with no rejection at all."""
    batch = decode_batch([json.dumps(value).encode()])
    return len(batch.events) == 1 and batch.rejections == []


def schema_accepts(validator: Draft202012Validator, value: Any) -> bool:
    return validator.is_valid(value)


def test_schema_path_finds_the_checkout_copy() -> None:
    """schema_path resolves the schema in the checkout's schemas/ folder."""
    assert schema_path("transaction-event.v1.json").parent.name == "schemas"


@pytest.mark.parametrize("case", list(GOOD))
def test_good_messages_pass_both(validator: Draft202012Validator, case: str) -> None:
    """A message valid under contract v1 is accepted by the schema and the decoder."""
    errors = [error.message for error in validator.iter_errors(GOOD[case])]
    assert errors == []
    assert decoder_accepts(GOOD[case])


@pytest.mark.parametrize("case", list(BAD))
def test_bad_messages_fail_both(validator: Draft202012Validator, case: str) -> None:
    """A message that breaks contract v1 is rejected by the schema and the decoder."""
    assert not schema_accepts(validator, BAD[case])
    assert not decoder_accepts(BAD[case])


@pytest.mark.parametrize("case", list(DIFFERENCES))
def test_documented_differences_hold(validator: Draft202012Validator, case: str) -> None:
    """Each known disagreement between schema and decoder is exactly as documented."""
    value, decoder_verdict, schema_verdict, _why = DIFFERENCES[case]
    assert decoder_accepts(value) is decoder_verdict
    assert schema_accepts(validator, value) is schema_verdict


def test_schema_example_is_valid_for_both(validator: Draft202012Validator) -> None:
    """The example embedded in the schema is a valid message for the schema and the decoder."""
    (example,) = validator.schema["examples"]
    assert schema_accepts(validator, example)
    assert decoder_accepts(example)


def test_schema_lists_every_event_field() -> None:
    """The schema documents every field of TransactionEvent, under its wire name."""
    schema = json.loads(schema_path("transaction-event.v1.json").read_text(encoding="utf-8"))
    wire_names = {field.encode_name for field in msgspec.structs.fields(TransactionEvent)}
    required = {f.encode_name for f in msgspec.structs.fields(TransactionEvent) if f.required}
    assert set(schema["properties"]) == wire_names
    assert set(schema["required"]) == required


def test_examples_in_the_contract_document_are_valid() -> None:
    """Every JSON example in docs/event-contract.md passes the schema and the decoder."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "event-contract.md"
    blocks = re.findall(r"```json\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert len(blocks) >= 2
    schema = json.loads(schema_path("transaction-event.v1.json").read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for block in blocks:
        example = json.loads(block)
        assert schema_accepts(validator, example), block
        assert decoder_accepts(example), block


def _schema() -> dict[str, Any]:
    return json.loads(schema_path("transaction-event.v1.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_schema_marks_exactly_the_identity_fields() -> None:
    """The schema's identity rule is the decoder's character class, on exactly the decoder's identity fields."""
    schema = _schema()
    assert schema["$defs"]["identity"]["not"]["pattern"] == FORBIDDEN_IN_IDENTITY_CLASS
    identity = {name for name, prop in schema["properties"].items()
                if prop.get("$ref") == "#/$defs/identity"}
    descriptive = {name for name, prop in schema["properties"].items()
                   if prop.get("$ref") == "#/$defs/descriptive"}
    assert identity == set(IDENTITY_FIELDS)
    assert descriptive == set(DESCRIPTIVE_FIELDS)


@pytest.mark.parametrize("name", IDENTITY_FIELDS)
@pytest.mark.parametrize("char", ["\x00", "\n", "\x1f", "\x7f", "\x9f", "\u2028", "\u2029", "\u200b",
                                  "\u202e", "\u2066", "\ufeff", "\u00ad"])
def test_a_forbidden_character_in_any_identity_field_fails_both(
        validator: Draft202012Validator, name: str, char: str) -> None:
    """Each control or invisible character, in each identity field, is rejected by the schema and the decoder."""
    value = message(**{name: GOOD["all optional fields"].get(name, message().get(name, "x")) + char})
    assert not schema_accepts(validator, value)
    assert not decoder_accepts(value)
