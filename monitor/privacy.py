"""Card numbers (PANs) in text: the Luhn check, finding, masking and scrubbing.

A foundation module: it imports nothing of cardmon, so every layer may use it. One
definition of a *PAN form* serves the decoder's decisions and every output scrubber
(dead letters, logs, messages, the store), so what the decoder accepts is not altered
on the way out (but for the decoder's two identity-field exceptions, merchant IDs that
are wholly a number and hex strings: see :mod:`monitor.pipeline.contract`).

A PAN form is 13–19 decimal digits that pass the Luhn check (ISO/IEC 7812-1), read
the way a person reads them:

* digits are any Unicode decimal digits (``4``, full-width ``４``, Arabic-Indic ``٤``,
  mathematical ``𝟒``...) and the characters NFKC folds to one (``⁴``, ``₄``, ``④``);
* invisible characters (Unicode categories Cf, Mn, Me: zero-width spaces and joiners,
  soft hyphens, bidi controls, combining marks) and NUL are ignored wherever they are;
* the digits are either **one run** (``4111111111111111``) or **grouped as card
  numbers are printed**: 4-4-4-1…4, 4-4-4-4-1…3 or 4-6-4…5 (Amex, Diners), with
  1–3 separators in each gap. A separator is any Unicode space (NBSP, thin, ideographic
  spaces...), line or paragraph separator, control character, punctuation (dashes,
  U+2212 minus, dots ``.`` ``·`` ``•`` ``・`` ``．``, ``_``, ``/``, ``:``, ``,``,
  brackets, quotes...: Unicode categories P*) or symbol (``+``, ``|``, ``~``, ``$``...:
  categories S*): anything a person reads past between digit groups;
* letters or other characters may touch it (``tok_4111111111111111``,
  ``abc4111-1111-1111-1111xyz``), but not more digits: a run of more than 19 digits,
  or one glued to another digit group in a non-card grouping, is not a PAN;
* with ``hex_strings=True`` (the decoder's choice for identity fields, where a wrong
  "PAN" rejects the event) a run glued to the letters a–f inside a token made only of
  hexadecimal characters (at least one of them a letter) is read as part of that hex
  string, not as a PAN: 0.4 % of SHA-256 hex digests and 0.05 % of 16-hex-digit tokens
  hold a Luhn-valid 13–19 digit run by chance. A run that *is* the whole token
  (``tok_4111111111111111``) is still a PAN. Output scrubbing reads no exception.

Groupings that are not card-like (``2026-03-02-000912``, ``+49 1512 3456 7890``) are
not PANs: dates, phone numbers and reference numbers keep their digits.

Output scrubbing (:func:`mask_pans`, :func:`scrub_pans`, and
:func:`monitor.dead_letter_copy.dead_letter_copy` on them) also
reads escapes as the characters they stand for (JSON ``\\u0034``, ``\\n``; Python
``\\x34``, ``\\U0001d7d2``) and bytes that are not UTF-8 as cp1252/Latin-1 characters
(a Latin-1 NBSP between digit groups is a separator).

The module stays whole (a little over 400 lines): the character kinds, the scanner,
the card groupings and the escape reading are together the one definition of a PAN
form, and a foundation that imports nothing of cardmon cannot share private parts with
a sibling. The dead-letter copy, which only uses it, is :mod:`monitor.dead_letter_copy`.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ASCII_SEPARATOR_CLASS",
    "DOTS",
    "NFKC_DIGITS",
    "PAN_MAX_DIGITS",
    "PAN_MIN_DIGITS",
    "PanSpan",
    "contains_pan",
    "find_pans",
    "is_pan",
    "luhn_valid",
    "mask_digits",
    "mask_pan",
    "mask_pans",
    "scrub_pans",
]

#: Shortest and longest PAN (ISO/IEC 7812-1).
PAN_MIN_DIGITS: Final = 13
PAN_MAX_DIGITS: Final = 19
# Separators allowed in one gap between digit groups (``4111 - 1111`` has three).
_MAX_GAP: Final = 3
# Card-number print groupings (group lengths), besides one unbroken run.
_SHAPES: Final[tuple[tuple[int, ...], ...]] = (
    *((4, 4, 4, last) for last in range(1, 5)),
    *((4, 4, 4, 4, last) for last in range(1, 4)),
    (4, 6, 4), (4, 6, 5),
)
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_ALNUM_ASCII: Final = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

#: Characters that are not Unicode decimal digits (Nd) but that NFKC folds to one:
#: superscripts, subscripts, circled digits.
NFKC_DIGITS: Final[dict[str, int]] = {
    "\u00b2": 2, "\u00b3": 3, "\u00b9": 1, "\u2070": 0,
    **{chr(0x2074 + i): 4 + i for i in range(6)},
    **{chr(0x2080 + i): i for i in range(10)},
    **{chr(0x2460 + i): 1 + i for i in range(9)},
    "\u24ea": 0,
}
#: Dots that separate digit groups (all punctuation does; kept as a name for the decoder).
DOTS: Final = ".\u00b7\u2022\u2024\u2027\u2219\u22c5\u30fb\ufe52\uff0e\uff61\uff65"
#: Spaces, line and paragraph separators, controls, punctuation (connector ``_``, dash,
#: open/close, quotes, other: ``/ : , . !``) and symbols (math ``+ | ~``, currency,
#: modifier, other): what may stand between the digit groups of a printed card number.
_SEPARATOR_CATEGORIES: Final = frozenset({
    "Zs", "Zl", "Zp", "Cc", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So",
})
_INVISIBLE_CATEGORIES: Final = frozenset({"Cf", "Mn", "Me"})

# Character kinds of the scanner.
_SEP: Final = -1
_INVISIBLE: Final = -2
_OTHER: Final = -3
_KINDS: dict[str, int] = {str(d): d for d in range(10)}  # <character: digit value or kind>

# 13 digit-like characters with only non-word characters (or ``_``) between them: every PAN form
# (and more) matches; the exact reading happens in Python on the match only.
_DIGIT_CLASS: Final = "\\d" + "".join(NFKC_DIGITS)
_CANDIDATE: Final = re.compile(
    f"[{_DIGIT_CLASS}](?:[\\W_]*[{_DIGIT_CLASS}]){{{PAN_MIN_DIGITS - 1},}}")
# Within an ASCII candidate (NULs removed), what a PAN form needs: 13 digits in a row,
# or card groups starting at a group start with 1-3 ASCII separators per gap (C0
# controls, DEL, space, punctuation and symbols: every ASCII character but letters and
# digits). A candidate without it is skipped without the character-by-character reading.
#: An ASCII character that separates digit groups: C0 controls, DEL, space, punctuation
#: and symbols (every ASCII character but NUL, letters and digits). Python's ``re`` and
#: Rust's ``regex`` (the decoder's polars column checks) read it the same way.
ASCII_SEPARATOR_CLASS: Final = r"[\x01-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]"
_ASCII_SEP: Final = ASCII_SEPARATOR_CLASS + "{1,3}"
_ASCII_GATE: Final = re.compile(
    f"[0-9]{{{PAN_MIN_DIGITS}}}|(?<![0-9])[0-9]{{4}}{_ASCII_SEP}"
    f"(?:[0-9]{{4}}{_ASCII_SEP}[0-9]{{4}}{_ASCII_SEP}[0-9]|[0-9]{{6}}{_ASCII_SEP}[0-9]{{4}})"
)
# Escapes read as the character they stand for (output scrubbing), and bytes that were
# not UTF-8 (``surrogateescape``). A surrogate pair first, then single escapes.
_ESCAPE: Final = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    r"|\\u[0-9a-fA-F]{4}|\\U[0-9a-fA-F]{8}|\\x[0-9a-fA-F]{2}|\\[nrtbfv0]"
    r"|[\udc80-\udcff]"
)
_SIMPLE_ESCAPES: Final = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


def luhn_valid(digits: str) -> bool:
    """Return whether an ASCII digit string passes the Luhn (mod 10) check of ISO/IEC 7812-1."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def mask_digits(digits: str) -> str:
    """PCI DSS 3.4 display mask of a digit string: first six, ``*``, last four."""
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def _kind(char: str) -> int:
    """Digit value (0-9) of ``char``, or ``_SEP``, ``_INVISIBLE`` or ``_OTHER``."""
    kind = _KINDS.get(char)
    if kind is not None:
        return kind
    value = unicodedata.decimal(char, None)
    if value is None:
        value = NFKC_DIGITS.get(char)
    if value is not None:
        kind = value
    elif char == "\0":
        kind = _INVISIBLE
    else:
        category = unicodedata.category(char)
        if category in _INVISIBLE_CATEGORIES:
            kind = _INVISIBLE
        elif category in _SEPARATOR_CATEGORIES or char in DOTS or char == "\u2212":
            kind = _SEP
        else:
            kind = _OTHER
    if len(_KINDS) < 65_536:  # bounded: arbitrary text cannot grow it without end
        _KINDS[char] = kind
    return kind


def _digits_only(text: str) -> str | None:
    """The ASCII digits of ``text`` if it holds only digits, separators and invisibles."""
    out = []
    for char in text:
        kind = _kind(char)
        if kind >= 0:
            out.append(chr(48 + kind))
        elif kind == _OTHER:
            return None
    return "".join(out)


def is_pan(text: str) -> bool:
    """Return whether the whole of ``text`` is one PAN: 13–19 digits that pass Luhn.

    Separators and invisible characters anywhere in it are ignored, any other
    character makes it not a PAN (``"4111 1111 1111 1111"`` is one; ``"tok_4111..."``
    is not, though it *holds* one: see :func:`contains_pan`).
    """
    digits = _digits_only(text)
    return (digits is not None and PAN_MIN_DIGITS <= len(digits) <= PAN_MAX_DIGITS
            and luhn_valid(digits))


def mask_pan(pan: str) -> str | None:
    """Mask a PAN to first six + last four digits (PCI DSS 3.4), ``None`` if not a PAN.

    Args:
        pan: the raw PAN; separators, invisible characters and the digit script are
            ignored (``"４１１１ １１１１..."`` works). The Luhn check is not required.

    Returns:
        e.g. ``"411111******1111"``, or ``None`` when ``pan`` is not 13–19 digits.
    """
    digits = _digits_only(pan)
    if digits is None or not PAN_MIN_DIGITS <= len(digits) <= PAN_MAX_DIGITS:
        return None
    return mask_digits(digits)


@dataclass(frozen=True, slots=True)
class PanSpan:
    """One PAN form found in a text.

    Attributes:
        start: index of its first digit in the text.
        end: index just after its last digit.
        digits: its ASCII digits (13–19).
        grouped: ``True`` if printed in groups (``4111 1111 ...``), ``False`` for one run.
    """

    start: int
    end: int
    digits: str
    grouped: bool

    @property
    def masked(self) -> str:
        """The PCI DSS display mask of the PAN (``411111******1111``)."""
        return mask_digits(self.digits)


@dataclass(slots=True)
class _Group:
    start: int  # index of the first digit
    end: int  # index after the last digit
    digits: list[str]


def _hex_string(text: str, group: _Group) -> bool:
    """Whether the run ``group`` lies inside a hexadecimal string token (see the module doc)."""
    start, end = group.start, group.end
    while start > 0 and text[start - 1] in _ALNUM_ASCII:
        start -= 1
    while end < len(text) and text[end] in _ALNUM_ASCII:
        end += 1
    token = text[start:end]
    return all(c in _HEX for c in token) and not token.isdigit()


def _runs(text: str, start: int, end: int) -> list[list[_Group]]:
    """Digit groups of ``text[start:end]``, split into runs a PAN cannot cross."""
    runs: list[list[_Group]] = []
    run: list[_Group] = []
    group: _Group | None = None
    gap = 0  # separators since the last digit
    for index in range(start, end):
        kind = _kind(text[index])
        if kind >= 0:
            if group is not None and gap == 0:
                group.digits.append(chr(48 + kind))
                group.end = index + 1
            else:
                group = _Group(index, index + 1, [chr(48 + kind)])
                run.append(group)
            gap = 0
        elif kind == _INVISIBLE:
            continue
        elif kind == _SEP and gap < _MAX_GAP and group is not None:
            gap += 1
        else:  # another character, or too many separators: the run ends
            if run:
                runs.append(run)
            run, group, gap = [], None, 0
            if kind == _SEP:  # this separator may precede the next run's digits
                gap = 0
    if run:
        runs.append(run)
    return runs


def _pans_in_run(text: str, run: list[_Group], hex_strings: bool) -> list[PanSpan]:
    found: list[PanSpan] = []
    index = 0
    while index < len(run):
        best: tuple[int, str] | None = None  # <(last group index, digits)>
        digits = "".join(run[index].digits)
        if (PAN_MIN_DIGITS <= len(digits) <= PAN_MAX_DIGITS and luhn_valid(digits)
                and not (hex_strings and _hex_string(text, run[index]))):
            best = (index, digits)
        for shape in _SHAPES:
            last = index + len(shape) - 1
            if last >= len(run) or (best is not None and sum(shape) <= len(best[1])):
                continue
            if all(len(run[index + i].digits) == size for i, size in enumerate(shape)):
                joined = "".join("".join(g.digits) for g in run[index:last + 1])
                if luhn_valid(joined):
                    best = (last, joined)
        if best is None:
            index += 1
            continue
        last, digits = best
        found.append(PanSpan(run[index].start, run[last].end, digits, grouped=last > index))
        index = last + 1
    return found


def _gate(text: str) -> bool:
    """Whether ASCII ``text`` may hold a PAN form (see _ASCII_GATE)."""
    return _ASCII_GATE.search(text.replace("\0", "") if "\0" in text else text) is not None


def _find(text: str, hex_strings: bool = False) -> list[PanSpan]:
    if text.isascii() and not _gate(text):  # most text: one regex search, no Python loop
        return []
    spans: list[PanSpan] = []
    for match in _CANDIDATE.finditer(text):
        region = match.group()
        if region.isascii() and not _gate(region):
            continue
        for run in _runs(text, match.start(), match.end()):
            if sum(len(g.digits) for g in run) >= PAN_MIN_DIGITS:
                spans.extend(_pans_in_run(text, run, hex_strings))
    return spans


def _unescape(match: re.Match[str]) -> str:
    escape = match.group(0)
    if len(escape) == 1:  # a byte that was not UTF-8: read it as cp1252, else Latin-1
        byte = bytes([ord(escape) - 0xDC00])
        try:
            return byte.decode("cp1252")
        except UnicodeDecodeError:
            return byte.decode("latin-1")
    if escape[1] in "ux" and len(escape) in (4, 6):
        return chr(int(escape[2:], 16))
    if escape[1] == "U":
        code = int(escape[2:], 16)
        return chr(code) if code <= 0x10FFFF else escape
    if escape[1] == "u":  # a surrogate pair
        high, low = int(escape[2:6], 16), int(escape[8:12], 16)
        return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
    return _SIMPLE_ESCAPES[escape[1]]


def _find_escaped(text: str) -> list[PanSpan]:
    """:func:`find_pans` on ``text`` with escapes read as the characters they stand for."""
    if "\\" not in text and not any("\udc80" <= c <= "\udcff" for c in text):
        return _find(text)
    pieces: list[str] = []
    marks: list[int] = []  # view index just after each escape's character
    shifts: list[int] = []  # original index minus view index after that escape
    position = view = 0
    for match in _ESCAPE.finditer(text):
        pieces.append(text[position:match.start()])
        view += match.start() - position
        pieces.append(_unescape(match))
        view += 1
        marks.append(view)
        shifts.append(match.end() - view)
        position = match.end()
    pieces.append(text[position:])

    def original(index: int) -> int:
        # Every escape wholly before ``index`` shifts it by that escape's extra length.
        at = bisect.bisect_right(marks, index) - 1
        return index if at < 0 else index + shifts[at]

    spans = _find("".join(pieces))
    return [PanSpan(original(s.start), original(s.end), s.digits, s.grouped) for s in spans]


def find_pans(text: str, *, escapes: bool = False, hex_strings: bool = False) -> list[PanSpan]:
    """Every PAN form in ``text``, left to right, not overlapping.

    Args:
        text: any text.
        escapes: also read JSON/Python escapes and ``surrogateescape`` bytes as the
            characters they stand for (for raw output such as a dead-letter value).
        hex_strings: read a run glued to a–f letters inside a hex token as part of
            that hex string, not as a PAN (see the module doc; not with ``escapes``).

    Returns:
        The spans, in text order (indices into ``text``).
    """
    return _find_escaped(text) if escapes else _find(text, hex_strings)


def contains_pan(text: str) -> bool:
    """Return whether ``text`` holds at least one PAN form (no escapes read)."""
    return bool(_find(text))


def mask_pans(text: str, *, escapes: bool = True) -> str:
    """Replace every PAN form in ``text`` by its mask (``411111******1111``).

    The whole form, separators included, becomes the 16-character mask of its digits;
    the rest of the text is unchanged.

    Args:
        text: any text (a log line, a message, a decoded field).
        escapes: also read escapes as characters (see :func:`find_pans`); the default,
            as output may hold JSON or ``repr`` text.
    """
    spans = find_pans(text, escapes=escapes)
    if not spans:
        return text
    out: list[str] = []
    position = 0
    for span in spans:
        out.append(text[position:span.start])
        out.append(span.masked)
        position = span.end
    out.append(text[position:])
    return "".join(out)


def scrub_pans(data: bytes) -> bytes:
    """Replace every PAN form in ``data`` by its mask; works on any bytes.

    ``data`` is read as UTF-8, with escapes read as characters and bytes that are
    not UTF-8 as cp1252 characters (see the module doc); everything but the PAN forms
    comes back byte for byte.
    """
    text = data.decode("utf-8", "surrogateescape")
    scrubbed = mask_pans(text)
    return data if scrubbed is text else scrubbed.encode("utf-8", "surrogateescape")
