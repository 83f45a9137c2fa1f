"""monitor.privacy: the one definition of a PAN form, its masking, scrubbing and dead-letter copies."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import monitor.pipeline.decoder
import monitor.privacy
from monitor.dead_letter_copy import dead_letter_copy
from monitor.privacy import (
    contains_pan,
    find_pans,
    is_pan,
    luhn_valid,
    mask_pan,
    mask_pans,
    scrub_pans,
)

PAN = "4111111111111111"  # Visa test PAN, Luhn-valid
MASKED = "411111******1111"
FULL_WIDTH = "".join(chr(0xFF10 + int(d)) for d in PAN)
ARABIC_INDIC = "".join(chr(0x0660 + int(d)) for d in PAN)
DEVANAGARI = "".join(chr(0x0966 + int(d)) for d in PAN)
MATH_BOLD = "".join(chr(0x1D7CE + int(d)) for d in PAN)


def test_privacy_is_a_foundation_module() -> None:
    """monitor/privacy.py imports nothing of cardmon, so every layer may use it."""
    tree = ast.parse(Path(monitor.privacy.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name == "monitor" or name.startswith(("monitor.", "simulators")) for name in imported)


def test_pan_functions_have_one_home() -> None:
    """PAN functions are imported from monitor.privacy only: the decoder does not re-export them."""
    for name in ("is_pan", "mask_pan", "scrub_pans", "luhn_valid"):
        assert name not in monitor.pipeline.decoder.__all__
        assert name in monitor.privacy.__all__


def test_luhn_and_masks() -> None:
    """Luhn follows ISO/IEC 7812-1; masks show the first six and last four digits."""
    assert luhn_valid(PAN) and luhn_valid("378282246310005") and not luhn_valid("4111111111111112")
    assert mask_pan("4111 1111 1111 1111") == MASKED
    assert mask_pan(FULL_WIDTH) == MASKED
    assert mask_pan("4111\u00a01111.1111-1111") == MASKED
    assert mask_pan("378282246310005") == "378282*****0005"
    assert mask_pan("4111111111111112") == "411111******1112"  # a raw pan is masked, valid or not
    assert mask_pan("12345") is None and mask_pan("tok_4111111111111111") is None


@pytest.mark.parametrize("text", [PAN, "4111 1111 1111 1111", FULL_WIDTH, "4111\u20091111\u20091111\u20091111"])
def test_is_pan_is_about_the_whole_value(text: str) -> None:
    """is_pan is true when the whole value, separators and digit script aside, is a PAN."""
    assert is_pan(text)
    assert not is_pan(f"tok_{text}")


# Each holds the Visa test PAN in one of the forms of issue 8; the mask replaces it whole.
PAN_FORMS: dict[str, tuple[str, str]] = {
    "plain": (PAN, MASKED),
    "spaces": ("card 4111 1111 1111 1111 declined", f"card {MASKED} declined"),
    "dashes": ("4111-1111-1111-1111", MASKED),
    "dots": ("4111.1111.1111.1111", MASKED),
    "no-break spaces": ("4111\u00a01111\u00a01111\u00a01111", MASKED),
    "narrow and thin spaces": ("4111\u202f1111\u20091111\u20091111", MASKED),
    "ideographic space": ("4111\u30001111\u30001111\u30001111", MASKED),
    "en dash and minus sign": ("4111\u20131111\u22121111\u20131111", MASKED),
    "katakana middle dot": ("4111\u30fb1111\u30fb1111\u30fb1111", MASKED),
    "full-width dot": ("4111\uff0e1111\uff0e1111\uff0e1111", MASKED),
    "mixed separators": ("4111 - 1111.1111\u00a01111", MASKED),
    "line breaks": ("4111\n1111\r\n1111\n1111", MASKED),
    "underscores inside a token": ("tok_4111_1111_1111_1111", f"tok_{MASKED}"),
    "slashes": ("REF 4111/1111/1111/1111", f"REF {MASKED}"),
    "colons": ("4111:1111:1111:1111", MASKED),
    "commas": ("4111,1111,1111,1111", MASKED),
    "plus signs": ("4111+1111+1111+1111", MASKED),
    "pipes": ("4111|1111|1111|1111", MASKED),
    "broken bar and tilde": ("4111\u00a61111~1111\u00a61111", MASKED),
    "full-width digits": (FULL_WIDTH, MASKED),
    "Arabic-Indic digits": (f"\u0631\u0642\u0645 {ARABIC_INDIC}", f"\u0631\u0642\u0645 {MASKED}"),
    "Devanagari digits": (DEVANAGARI, MASKED),
    "mathematical digits": (MATH_BOLD, MASKED),
    "superscript first digit": ("\u2074111111111111111", MASKED),
    "zero-width space inside": ("41\u200b11111111111111", MASKED),
    "soft hyphen inside": ("4111\u00ad1111\u00ad1111\u00ad1111", MASKED),
    "combining marks": ("4\u03011\u030111111111111111", MASKED),
    "bidi override around": ("\u202e4111111111111111\u202c", f"\u202e{MASKED}\u202c"),
    "token prefix": (f"tok_{PAN}", f"tok_{MASKED}"),
    "letters around a grouping": ("abc4111-1111-1111-1111xyz", f"abc{MASKED}xyz"),
    "after a short group": ("ref 99 4111111111111111", f"ref 99 {MASKED}"),
    "before an expiry": ("4111 1111 1111 1111 12/25", f"{MASKED} 12/25"),
    "Amex 4-6-5": ("amex 3782 822463 10005", "amex 378282*****0005"),
    "Diners 4-6-4": ("3056 930902 5904", "305693****5904"),
    "13 digits 4-4-4-1": ("4222 2222 2222 2", "422222***2222"),
    "19 digits 4-4-4-4-3": ("6011 0009 9013 9424 090", "601100*********4090"),
    "JSON-quoted": ('{"city": "4111 1111 1111 1111"}', f'{{"city": "{MASKED}"}}'),
}


@pytest.mark.parametrize("case", list(PAN_FORMS))
def test_every_pan_form_is_found_and_masked(case: str) -> None:
    """Each PAN form of issue 8 is found and replaced by its mask, the text around it kept."""
    text, masked = PAN_FORMS[case]
    assert luhn_valid("6011000990139424090") and luhn_valid("30569309025904")
    assert contains_pan(text)
    assert mask_pans(text) == masked
    assert scrub_pans(text.encode()) == masked.encode()


NOT_PANS = [
    "4111111111111112",  # fails Luhn
    "411111111111",  # 12 digits
    "41111111111111111111111",  # 23 digits: longer than any PAN
    "sw-2026-03-02-000912", "evt-20240101-000123", "20260302000912-1",
    "2026-03-02T10:15:00.250+01:00", "2026-03-02 10:15", "02/03/2026",
    "+33 1 55 00 12 34", "+49 1512 3456 7890", "+1 (212) 555-0123", "0032 2 555 12 34",
    "+44 20 7946 0958", "1-800-555-0199",
    "syn7-1772445600-00000001", "550e8400-e29b-41d4-a716-446655440000",
    "12345678-1234-1234-1234-123456789012", "1.234.567.890,12 EUR", "192.168.100.200:8080",
    "MER-12", "3527213246127876953", "-727612092139916043",  # TabFormer-like: 19 digits, one run
    "411111******1111", "4111 1111 1111",  # a mask, 12 grouped digits
]


@pytest.mark.parametrize("text", NOT_PANS)
def test_dates_phones_ids_and_masks_are_not_pans(text: str) -> None:
    """Dates, phone numbers, event IDs, UUIDs, amounts and long runs keep their digits."""
    assert find_pans(text) == [] and not contains_pan(text)
    assert mask_pans(text) == text
    assert scrub_pans(text.encode()) == text.encode()


def test_spans_say_where_and_how() -> None:
    """find_pans gives each form's place, digits and whether it was grouped."""
    text = f"a {PAN} b 4111 1111 1111 1111 c"
    first, second = find_pans(text)
    assert (first.start, first.end, first.digits, first.grouped) == (2, 18, PAN, False)
    assert text[second.start:second.end] == "4111 1111 1111 1111" and second.grouped
    assert first.masked == MASKED


def test_hex_strings_are_read_as_hex_only_when_asked() -> None:
    """A Luhn-valid run glued to a-f letters in a hex token is a PAN, unless hex_strings is set."""
    digest = "0123456789abcdef" + PAN + "abcdef0123456789abcdef0123456789"
    token = "tok_70768005956542de"  # 16 hex digits holding a Luhn-valid 14-digit run
    for text in (digest, token):
        assert find_pans(text) and not find_pans(text, hex_strings=True)
    assert find_pans(f"tok_{PAN}", hex_strings=True)  # the whole token is digits
    assert find_pans(f"card{PAN}", hex_strings=True)  # r is not a hex letter
    assert find_pans(f"{PAN[:4]} {PAN[4:8]} {PAN[8:12]} {PAN[12:]}beef", hex_strings=True)


@pytest.mark.parametrize(("raw", "scrubbed"), [
    (b'{"city":"4111\\u00a01111\\u00a01111\\u00a01111"}', f'{{"city":"{MASKED}"}}'.encode()),
    (b'{"city":"\\u0034111111111111111"}', f'{{"city":"{MASKED}"}}'.encode()),
    (b'"\\ud835\\udfd2' + PAN[1:].encode() + b'"', f'"{MASKED}"'.encode()),
    (b"repr '4111\\xa01111\\xa01111\\xa01111'", f"repr '{MASKED}'".encode()),
    (b"latin-1 4111\xa01111\xa01111\xa01111 \xe9t\xe9", f"latin-1 {MASKED} \xe9t\xe9".encode("latin-1")),
    (b"cp1252 4111\x961111\x961111\x961111", f"cp1252 {MASKED}".encode()),
    ("4111 1111 1111 1111".encode("utf-16-le"), MASKED.encode() + b"\x00"),
    (b"\xff\xfe garbage " + PAN.encode(), b"\xff\xfe garbage " + MASKED.encode()),
])
def test_scrub_pans_reads_escapes_and_other_encodings(raw: bytes, scrubbed: bytes) -> None:
    """Output scrubbing reads JSON and Python escapes, cp1252/Latin-1 bytes and UTF-16 NULs."""
    assert scrub_pans(raw) == scrubbed


def test_scrub_pans_returns_clean_bytes_unchanged() -> None:
    """Bytes without a PAN form come back as they are, byte for byte, also when not UTF-8."""
    for data in (b'{"a": 1}', b"\xff\xfe\x00", "Zoë 2026-03-02".encode(), b""):
        assert scrub_pans(data) == data


def _loads(copy: bytes) -> object:
    return json.loads(copy)


@pytest.mark.parametrize("pan", [PAN, "4111111111111112", 4111111111111111, 4111111111111112, 12.5,
                                 True, None, ["4111", "1111"], {"number": PAN}, "", "tok"])
def test_dead_letter_copy_never_keeps_pan_whatever_its_value(pan: object) -> None:
    """The pan member leaves the copy whatever its type or value; the rest is kept, PAN-scrubbed."""
    value = json.dumps({"event_id": "e-1", "pan": pan, "city": "Lyon 4111.1111.1111.1111"}).encode()
    copy = dead_letter_copy(value)
    assert _loads(copy) == {"event_id": "e-1", "city": f"Lyon {MASKED}"}


def test_dead_letter_copy_of_nested_and_odd_json() -> None:
    """Nested pan members, PAN keys, numbers and other JSON documents are cleaned too."""
    value = json.dumps({"a": {"PAN": "4111111111111112", "b": [PAN, 4111111111111111]},
                        PAN: 1, "amount_minor": 2599}).encode()
    assert _loads(dead_letter_copy(value)) == {"a": {"b": [MASKED, MASKED]}, MASKED: 1, "amount_minor": 2599}
    assert _loads(dead_letter_copy(json.dumps([{"pan": 1}, PAN]).encode())) == [{}, MASKED]
    assert dead_letter_copy(b"") == b""
    utf16 = json.dumps({"pan": "4111111111111112", "c": "4111 1111 1111 1111"}).encode("utf-16")
    assert _loads(dead_letter_copy(utf16)) == {"c": MASKED}


@pytest.mark.parametrize(("raw", "kept"), [
    (b'{"event_id": "e-1", "pan": "4111111111111112", "city": "Ly', b'{"event_id": "e-1", "city": "Ly'),
    (b'{"pan": 4111111111111112, "x": 1', b'{"x": 1'),
    (b'{"x": 1, "pan": {"a": "}", "b": [1, 2]}, "y": 2', b'{"x": 1, "y": 2'),
    (b'{"x": 1, "p\\u0061n": "4111111111111112"', b'{"x": 1, '),
    (b'{"pan": "4111111111111112', b'{'),
    (b"{'pan': '4111111111111112', 'x': 1", b"{'x': 1"),
    (b'\xff{"pan": "4111 1111 1111 1112", "c": "' + PAN.encode() + b'"',
     b'\xff{"c": "' + MASKED.encode() + b'"'),
])
def test_dead_letter_copy_of_invalid_json_drops_pan_members(raw: bytes, kept: bytes) -> None:
    """Truncated JSON, other quotes and invalid UTF-8 lose their pan members too, then PAN forms."""
    assert dead_letter_copy(raw) == kept


def test_dead_letter_copy_survives_deep_nesting() -> None:
    """JSON nested too deeply to parse or to write back is scrubbed as text, never raising."""
    deep = b'{"pan": "4111111111111112", "a": ' + b"[" * 100_000 + PAN.encode()
    copy = dead_letter_copy(deep)
    assert b"4111111111111112" not in copy and PAN.encode() not in copy


def test_dead_letter_copy_reads_truncated_utf16_as_utf16() -> None:
    """A truncated UTF-16 value is read as UTF-16: its pan member goes, its PAN forms are masked."""
    text = '{"pan": "4111111111111112", "city": "\u2074111.1111.1111.1111", "x": "tr'
    copy = dead_letter_copy(text.encode("utf-16"))
    assert copy.decode() == '{"city": "411111******1111", "x": "tr'
