"""Text fields of the event contract: which identify, which describe, what each may hold.

*Identity* fields name things (the event, the terminal, the card, the client, the
merchant, and the ISO 8583 ids): a character that does not belong in a name makes
the event invalid, and a PAN in one makes it a card-data leak, so either rejects the
event. *Descriptive* fields are free text a person reads (the merchant's name and
location, the city, region and branch): their odd characters are cleaned and a PAN
in one is masked, and the event is processed, so a VIP failure at a merchant whose
name holds a line break still reaches its manager.

The character classes here are written once, in the syntax Python's ``re``, Rust's
``regex`` (polars) and ECMA-262 (JSON Schema) all read the same way; the decoder's
column checks and ``schemas/transaction-event.v1.json`` use these very strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from monitor.privacy import PAN_MIN_DIGITS, find_pans, mask_pans

__all__ = [
    "CONTROL_CLASS",
    "DESCRIPTIVE_FIELDS",
    "DESCRIPTIVE_LIST_FIELDS",
    "FORBIDDEN_IN_IDENTITY_CLASS",
    "IDENTITY_FIELDS",
    "INVISIBLE_CLASS",
    "MERCHANT_ID_PAN_DIGITS",
    "Cleaned",
    "clean_descriptive",
    "identity_problem",
]

#: Identity fields, in the order the decoder checks them: a forbidden character or a
#: PAN form rejects the event (``card_ref`` with ``pan_in_card_ref``).
IDENTITY_FIELDS: Final[tuple[str, ...]] = (
    "event_id", "terminal_id", "card_ref", "customer_id", "merchant_id", "mti", "stan",
    "rrn", "processing_code", "response_code", "currency", "pan_masked",
)
#: Descriptive fields (one string each): cleaned, PAN forms masked, event processed.
DESCRIPTIVE_FIELDS: Final[tuple[str, ...]] = ("merchant_name", "city", "region", "branch_id")
#: Descriptive fields that hold a list of strings, each cleaned the same way.
DESCRIPTIVE_LIST_FIELDS: Final[tuple[str, ...]] = ("decline_reasons",)

#: C0 controls (NUL to US), DEL, C1 controls (NEL...), LINE and PARAGRAPH SEPARATOR.
CONTROL_CLASS: Final = r"[\x00-\x1f\x7f-\x9f\u2028\u2029]"
#: Invisible formatting characters: soft hyphen, Arabic letter mark, Mongolian vowel
#: separator, zero-width space/non-joiner/joiner, LRM, RLM, bidi embeddings, overrides
#: and isolates, word joiner and invisible operators, BOM (zero-width no-break space).
INVISIBLE_CLASS: Final = (
    r"[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
#: What an identity field may not hold: a control or an invisible character.
FORBIDDEN_IN_IDENTITY_CLASS: Final = CONTROL_CLASS[:-1] + INVISIBLE_CLASS[1:]

_CONTROL: Final = re.compile(CONTROL_CLASS)
_INVISIBLE: Final = re.compile(INVISIBLE_CLASS)
_FORBIDDEN: Final = re.compile(FORBIDDEN_IN_IDENTITY_CLASS)
# What clean_descriptive would change besides a PAN: a forbidden character, white space
# at an end, doubled, or other than a plain space (Python's \s also covers \x1c-\x1f).
_UNCLEAN: Final = re.compile(f"{FORBIDDEN_IN_IDENTITY_CLASS}|^\\s|\\s$|\\s\\s|[^\\S ]")
#: ISO 8583 field 42 is 15 characters, often 15 digits: as long as an Amex PAN. So a
#: merchant ID that is *wholly* one ASCII number (optionally signed: TabFormer's 19-digit
#: IDs are signed 64-bit integers) is a merchant ID unless it has 16 digits once its
#: leading zeros are set aside (Visa/Mastercard length, which no standard merchant ID
#: has; ``0004111111111111111`` is a zero-padded card number). Any other PAN form in it
#: (inside a longer token, grouped, other digit scripts) follows the common rule.
MERCHANT_ID_PAN_DIGITS: Final = 16
_MERCHANT_NUMBER: Final = re.compile(r"-?[0-9]{13,19}")


def identity_problem(name: str, text: str) -> tuple[str, str] | None:
    """The rejection ``(reason, detail)`` of identity field ``name`` holding ``text``, or ``None``.

    Args:
        name: one of :data:`IDENTITY_FIELDS` (a ``merchant_id`` that is wholly a number
            has its own rule, :data:`MERCHANT_ID_PAN_DIGITS`).
        text: the field's value.

    Returns:
        ``("invalid_field", ...)`` for a control or invisible character,
        ``("pan_in_card_ref", ...)`` or ``("pan_in_field", ...)`` for a PAN form, else
        ``None``. The detail names the field, never its value.
    """
    if _FORBIDDEN.search(text):
        return "invalid_field", (f"{name} holds a control or invisible character "
                                 "(identity fields may not)")
    if len(text) < PAN_MIN_DIGITS:  # the ISO 8583 ids, most codes: too short for a PAN
        return None
    if (name == "merchant_id" and _MERCHANT_NUMBER.fullmatch(text)
            and len(text.lstrip("-").lstrip("0")) != MERCHANT_ID_PAN_DIGITS):
        return None
    # A wrong "PAN" here loses the event: hex strings (hashes, hex tokens) are read as hex.
    if not find_pans(text, hex_strings=True):
        return None
    if name == "card_ref":
        return "pan_in_card_ref", "card_ref holds a PAN; send a token or hash of the card"
    return "pan_in_field", f"{name} holds a PAN; card numbers belong nowhere but pan_masked"


@dataclass(frozen=True, slots=True)
class Cleaned:
    """A descriptive value after :func:`clean_descriptive`.

    Attributes:
        value: the cleaned text, ``None`` when nothing but blanks was left.
        text_changed: control, invisible or surplus white-space characters were
            replaced, removed or collapsed.
        pan_masked: a PAN form was masked.
    """

    value: str | None
    text_changed: bool
    pan_masked: bool


def clean_descriptive(text: str) -> Cleaned:
    """Clean one descriptive value for display and storage.

    In order: each control character, line or paragraph separator becomes a space;
    invisible formatting characters are removed; every run of white space (any
    Unicode space, tab, NBSP...) becomes one space and the ends are trimmed; every PAN
    form left is masked (:func:`monitor.privacy.mask_pans`, ``411111******1111``).

    Args:
        text: the producer's value.

    Returns:
        A :class:`Cleaned`; ``value`` is ``None`` if the text was only blanks.
    """
    if _UNCLEAN.search(text) is None:
        masked = mask_pans(text, escapes=False)
        return Cleaned(masked, text_changed=False, pan_masked=masked is not text)
    cleaned = " ".join(_INVISIBLE.sub("", _CONTROL.sub(" ", text)).split())
    masked = mask_pans(cleaned, escapes=False)
    return Cleaned(masked or None, text_changed=cleaned != text, pan_masked=masked != cleaned)
