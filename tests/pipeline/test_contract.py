"""monitor.pipeline.contract: identity fields are rejected for odd characters or a PAN, descriptive ones cleaned."""

from __future__ import annotations

import re

import msgspec
import pytest

from monitor.domain import TransactionEvent
from monitor.pipeline.contract import (
    CONTROL_CLASS,
    DESCRIPTIVE_FIELDS,
    DESCRIPTIVE_LIST_FIELDS,
    FORBIDDEN_IN_IDENTITY_CLASS,
    IDENTITY_FIELDS,
    INVISIBLE_CLASS,
    clean_descriptive,
    identity_problem,
)

PAN = "4111111111111111"
MASKED = "411111******1111"


def test_every_text_field_of_the_contract_is_identity_or_descriptive() -> None:
    """Each string field of TransactionEvent (but the raw pan) has exactly one text rule."""
    text_fields = {f.name for f in msgspec.structs.fields(TransactionEvent)
                   if "str" in repr(f.type) and f.name != "raw_pan"}
    assert set(IDENTITY_FIELDS) | set(DESCRIPTIVE_FIELDS) | set(DESCRIPTIVE_LIST_FIELDS) == text_fields
    assert not set(IDENTITY_FIELDS) & set(DESCRIPTIVE_FIELDS)


def test_the_forbidden_class_is_controls_plus_invisibles() -> None:
    """What an identity field may not hold is the control class and the invisible class, nothing else."""
    forbidden = re.compile(FORBIDDEN_IN_IDENTITY_CLASS)
    controls, invisibles = re.compile(CONTROL_CLASS), re.compile(INVISIBLE_CLASS)
    for code in range(0x3000):
        char = chr(code)
        assert bool(forbidden.match(char)) == bool(controls.match(char) or invisibles.match(char))


@pytest.mark.parametrize(("name", "text", "reason"), [
    ("card_ref", f"tok_{PAN}", "pan_in_card_ref"),
    ("card_ref", "4111 1111 1111 1111", "pan_in_card_ref"),
    ("event_id", "evt-4111.1111.1111.1111", "pan_in_field"),
    ("customer_id", "\uff14" + "\uff11" * 15, "pan_in_field"),
    ("terminal_id", PAN, "pan_in_field"),
    ("merchant_id", PAN, "pan_in_field"),  # 16 digits: a Visa/Mastercard length
    ("merchant_id", "3782-822463-10005", "pan_in_field"),  # an Amex printed in groups
    ("merchant_id", f"M{PAN}", "pan_in_field"),
    ("merchant_id", "MID378282246310005", "pan_in_field"),  # an Amex inside a longer token
    ("merchant_id", "-4111111111111111", "pan_in_field"),
    ("merchant_id", "0004111111111111111", "pan_in_field"),  # a Visa length, zero-padded to 19
    ("merchant_id", "MER_4111_1111_1111_1111", "pan_in_field"),  # grouped by underscores
    ("card_ref", "tok_4111_1111_1111_1111", "pan_in_card_ref"),
    ("event_id", "evt\x00", "invalid_field"),
    ("card_ref", "tok\n", "invalid_field"),
    ("customer_id", "C\u200b1", "invalid_field"),
    ("merchant_id", "M\u202e1", "invalid_field"),
    ("stan", "000123\n", "invalid_field"),
])
def test_identity_fields_are_rejected_for_a_pan_or_a_forbidden_character(name: str, text: str,
                                                                         reason: str) -> None:
    """A PAN form or a control/invisible character in an identity field gives the expected reason."""
    problem = identity_problem(name, text)
    assert problem is not None and problem[0] == reason
    assert PAN not in problem[1] and text not in problem[1]


@pytest.mark.parametrize(("name", "text"), [
    ("merchant_id", "378282246310005"),  # 15 digits: ISO 8583 field 42's length
    ("merchant_id", "481970464790429"),
    ("merchant_id", "3527213246127876953"),  # TabFormer: 19 digits, signed 64-bit
    ("merchant_id", "-727612092139916043"),
    ("event_id", "sw-2026-03-02-000912"),
    ("event_id", "syn7-1772445600-00000001"),
    ("customer_id", "+49 1512 3456 7890"),
    ("card_ref", "tok_70768005956542de"),  # hex token with a Luhn-valid 14-digit run
    ("card_ref", "a4111111111111111"),  # a run glued to a-f letters: read as hex (the limit)
    ("card_ref", "9f86d081884c7d659a2feaa0c55ad0154111111111111111abcdef0123456789"),
    ("customer_id", "Zoë Ægir-∑"),
])
def test_identity_values_that_only_look_like_numbers_are_accepted(name: str, text: str) -> None:
    """Merchant IDs of 15 or 19 digits, dated event IDs, phone numbers and hex hashes pass."""
    assert identity_problem(name, text) is None


@pytest.mark.parametrize(("text", "value", "text_changed", "pan_masked"), [
    ("CAFE DU PORT", "CAFE DU PORT", False, False),
    ("CAFE DU\nPORT", "CAFE DU PORT", True, False),
    ("  Lyon\t\u00a0ARA \u2028", "Lyon ARA", True, False),
    ("bidi\u202e text\u200b", "bidi text", True, False),
    ("SHOP 4111.1111.1111.1111", f"SHOP {MASKED}", False, True),
    ("SHOP\n4111\n1111\n1111\n1111", f"SHOP {MASKED}", True, True),
    ("\x00\n ", None, True, False),
    ("Café Zoë", "Café Zoë", False, False),
    ("cafe\u0301", "cafe\u0301", False, False),  # a combining accent is text, kept
])
def test_descriptive_values_are_cleaned(text: str, value: str | None, text_changed: bool,
                                        pan_masked: bool) -> None:
    """Controls become spaces, invisibles go, white space collapses, PAN forms are masked."""
    cleaned = clean_descriptive(text)
    assert (cleaned.value, cleaned.text_changed, cleaned.pan_masked) == (value, text_changed, pan_masked)
