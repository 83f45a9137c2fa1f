"""Column checks of the decoder's fast path: which rows of a batch the reference decoder must see.

:func:`monitor.pipeline.reference_decoder.decode_batch` is the reference.
:func:`monitor.pipeline.decoder.decode_frame` gets the same result faster: it decodes with
:data:`unchecked_decoder`, a copy of TransactionEvent whose string patterns are dropped
(msgspec runs Python's ``re`` for each pattern of each event), checks the patterns and
the reference's rules on whole columns here (:func:`check_columns`), and sends every
message that fails or might fail any of them, or that the copy could not decode,
through ``decode_batch`` itself. The column checks only need to be conservative (flag
every row the reference might reject or change); a flagged row that turns out valid
simply takes the slower path.
"""

from __future__ import annotations

import functools
import operator
import types
import typing
from typing import Annotated, Any, Final

import msgspec
import polars as pl

from monitor.domain import TransactionEvent
from monitor.frames import collect
from monitor.pipeline.contract import (
    DESCRIPTIVE_FIELDS,
    FORBIDDEN_IN_IDENTITY_CLASS,
    MERCHANT_ID_PAN_DIGITS,
)
from monitor.pipeline.reference_decoder import (
    CURRENCIES,
    EARLIEST_EVENT_TIME,
    IDENTITY_JOINER,
    LATEST_EVENT_TIME,
)
from monitor.privacy import ASCII_SEPARATOR_CLASS, NFKC_DIGITS, PAN_MAX_DIGITS, PAN_MIN_DIGITS

__all__ = [
    "CHECK_ONLY_COLUMNS",
    "FIELD_PATTERNS",
    "UncheckedEvent",
    "check_columns",
    "unchecked_decoder",
]


def _strip_patterns(annotation: Any, patterns: list[str]) -> Any:
    """``annotation`` without ``pattern=`` in its msgspec constraints (collected in ``patterns``)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *metadata = typing.get_args(annotation)
        kept: list[Any] = []
        for meta in metadata:
            if isinstance(meta, msgspec.Meta) and meta.pattern is not None:
                patterns.append(meta.pattern)
                options = {name: getattr(meta, name) for name in _META_OPTIONS}
                options = {name: value for name, value in options.items() if value is not None}
                if options:
                    kept.append(msgspec.Meta(**options))
            else:
                kept.append(meta)
        base = _strip_patterns(base, patterns)
        return Annotated[(base, *kept)] if kept else base
    if origin in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, [_strip_patterns(arg, patterns)
                                               for arg in typing.get_args(annotation)])
    if origin is list:
        (item,) = typing.get_args(annotation)
        inner: list[str] = []
        stripped = _strip_patterns(item, inner)
        if inner:  # a pattern inside a list would need a list check: keep it in msgspec
            return annotation
        return list[stripped]  # type: ignore[valid-type]
    return annotation


_META_OPTIONS: Final = ("gt", "ge", "lt", "le", "multiple_of", "min_length", "max_length", "tz",
                        "title", "description", "examples", "extra_json_schema", "extra")


def _unchecked_event() -> tuple[type[msgspec.Struct], dict[str, str]]:
    """TransactionEvent without its top-level string patterns, and ``{field: pattern}``."""
    fields: list[tuple[str, Any, Any]] = []
    patterns: dict[str, str] = {}
    for info in msgspec.structs.fields(TransactionEvent):
        found: list[str] = []
        annotation = _strip_patterns(info.type, found)
        if len(found) > 1:
            raise TypeError(f"{info.name}: one pattern per field is supported, not {found}")
        if found:
            patterns[info.name] = found[0]
        default = (msgspec.field(name=info.encode_name) if info.required
                   else msgspec.field(default=info.default, name=info.encode_name))
        fields.append((info.name, annotation, default))
    # gc=False: the structs hold no reference cycles, and 5,000 tracked objects per batch
    # would trigger collections of their own.
    struct = msgspec.defstruct("_UncheckedEvent", fields, kw_only=True, gc=False)
    return struct, patterns


UncheckedEvent, FIELD_PATTERNS = _unchecked_event()
#: Decodes a message value into an :data:`UncheckedEvent` (no string pattern checked).
unchecked_decoder: Final = msgspec.json.Decoder(UncheckedEvent)

def _rust_class(chars: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in chars)


#: Conservative column versions of the text rules (Rust regex: no look-around, no
#: back-references). A row matching none of them passes the identity rules and needs no
#: cleaning; a row matching one is decided by decode_batch.
# A PAN form (monitor.privacy) made of ASCII only is 13 digits in a row, or card groups
# (4 digits after a non-digit, a gap, then 4-4-x or 6-4...) with 1-3 separators per
# gap: the ASCII part matches every one. A PAN form with a character beyond ASCII has a
# digit of another script, or a separator or invisible character beyond ASCII reached
# from a digit across separators and invisibles only: the second part matches every
# one, and (unlike a 13-fold repetition of Unicode classes) compiles in microseconds,
# which matters as polars compiles each pattern on each batch.
_COLUMN_ASCII_SEPARATORS: Final = ASCII_SEPARATOR_CLASS + "{1,3}"
_COLUMN_ASCII_GROUPED: Final = (
    f"(?:^|[^0-9])[0-9]{{4}}{_COLUMN_ASCII_SEPARATORS}"
    f"(?:[0-9]{{4}}{_COLUMN_ASCII_SEPARATORS}[0-9]{{4}}{_COLUMN_ASCII_SEPARATORS}[0-9]"
    f"|[0-9]{{6}}{_COLUMN_ASCII_SEPARATORS}[0-9]{{4}})"
)
_COLUMN_ASCII_PAN: Final = f"[0-9]{{{PAN_MIN_DIGITS}}}|{_COLUMN_ASCII_GROUPED}"
_COLUMN_DIGIT: Final = f"\\p{{Nd}}{_rust_class(''.join(NFKC_DIGITS))}"
_COLUMN_BETWEEN: Final = (
    "\\p{Zs}\\p{Zl}\\p{Zp}\\p{Cc}\\p{P}\\p{S}"
    r"\p{Cf}\p{Mn}\p{Me}"
)
_COLUMN_WIDE_PAN: Final = (
    f"[[{_COLUMN_DIGIT}]--[0-9]]"
    f"|[{_COLUMN_DIGIT}][{_COLUMN_BETWEEN}]*[[{_COLUMN_BETWEEN}]--[\\x00-\\x7f]]"
)
_COLUMN_PAN: Final = f"{_COLUMN_ASCII_PAN}|{_COLUMN_WIDE_PAN}"
_COLUMN_IDENTITY_SUSPECT: Final = f"{FORBIDDEN_IN_IDENTITY_CLASS}|{_COLUMN_PAN}"
# The hex-string exception of the identity fields (monitor.privacy, hex_strings=True),
# on the rows the column checks flagged: a value beyond printable ASCII stays flagged;
# in one of printable ASCII (no forbidden or invisible character can be there), a run of
# digits inside a token of hex characters with an a-f letter is not a PAN, so such
# tokens are replaced (by "x", which joins no digits) before looking for a 13-digit run
# again. The boundaries are consumed, so of two tokens one character apart the second
# stays (conservative). Card groupings stay flagged.
_COLUMN_HEX_TOKEN: Final = r"(?:^|[^0-9A-Za-z])[0-9]*[a-fA-F][0-9a-fA-F]*(?:[^0-9A-Za-z]|$)"
# merchant_id: a value that is wholly a signed number of 13-19 digits is an ID unless
# it has 16 digits past its leading zeros (MERCHANT_ID_PAN_DIGITS), so TabFormer's
# 19-digit IDs stay on the fast path; any other value goes by the identity rule.
_COLUMN_MERCHANT_ID_NUMBER: Final = f"^-?[0-9]{{{PAN_MIN_DIGITS},{PAN_MAX_DIGITS}}}$"
_COLUMN_MERCHANT_ID_CARD_LENGTH: Final = f"^-?0*[1-9][0-9]{{{MERCHANT_ID_PAN_DIGITS - 1}}}$"
# Descriptive fields: white space that clean_descriptive collapses (at an end, doubled,
# or other than a plain space) is collapsed here, per column; a control or invisible
# character, or a PAN form in the collapsed text, is left to Python. Rust's \s (Unicode
# White_Space) is Python's str.split() white space but for U+001C-U+001F, controls both.
_COLUMN_WHITESPACE: Final = r"^\s|\s$|\s\s|[^\S ]"
_COLUMN_DESCRIPTIVE_SUSPECT: Final = f"{FORBIDDEN_IN_IDENTITY_CLASS}|{_COLUMN_PAN}"
_COLUMN_DESCRIPTIVE_UNUSUAL: Final = f"{_COLUMN_WHITESPACE}|{_COLUMN_DESCRIPTIVE_SUSPECT}"
#: Identity fields without a strict pattern (a pattern of printable ASCII, like
#: terminal_id's, still lets a 16-digit PAN through); the others' patterns admit
#: neither a control character nor 13 digits.
_COLUMN_IDENTITY_FIELDS: Final = ("event_id", "terminal_id", "card_ref", "customer_id")
#: Columns of the unchecked decode that only the checks need (not part of the frame).
CHECK_ONLY_COLUMNS: Final[dict[str, pl.DataType]] = {"mti": pl.String(), "processing_code": pl.String()}


def _collapsed(name: str) -> pl.Expr:
    """The descriptive column ``name`` with its white space collapsed and trimmed, ``""`` as null."""
    text = pl.col(name).str.replace_all(r"\s+", " ").str.strip_chars(" ")
    return pl.when(text == "").then(None).otherwise(text).alias(name)


def _identity_flags(frame: pl.DataFrame, joined: pl.Series) -> pl.Series:
    """Rows whose identity fields without a strict pattern might be rejected.

    ``joined`` is :data:`_IDENTITY_JOINED` of ``frame``: one pass over the fields joined
    (by a private-use character: not a digit, separator, invisible or forbidden one, so
    no PAN form spans two fields). The rows it flags (few) are looked at closer, field
    by field, in one polars call: a value of printable ASCII whose only 13-digit runs
    lie in hex strings is cleared (see _COLUMN_HEX_TOKEN).
    """
    if not joined.any():
        return joined
    closer = collect(frame[list(_COLUMN_IDENTITY_FIELDS)].hstack([joined.alias("_joined")]).lazy()
                     .with_row_index("_at").filter(pl.col("_joined")).select("_at", _IDENTITY_CLOSER))
    return joined.scatter(closer.get_column("_at"), closer.get_column("_closer"))


def check_columns(frame: pl.DataFrame) -> tuple[pl.Series, pl.DataFrame]:
    """The rows decode_batch might reject or change beyond white space, and the cleaned columns.

    One polars call for every check of every row (:data:`_ROW_FLAGS`, the identity fields
    joined, the descriptive fields' :data:`_WS_FLAGS`), one more for the few rows whose
    identity fields it flags, and one for the descriptive columns with anything unusual
    (the others are Series and column operations, no polars plan).

    Returns:
        ``suspect`` (True: send the row to decode_batch) and, row for row, one
        ``_ws_<name>`` flag per descriptive field (True: its white space is to be
        collapsed; only meaningful where ``suspect`` is False) and the collapsed column
        of each field that has a flag set.
    """
    checked = frame.select(pl.any_horizontal(_ROW_FLAGS).alias("_suspect"),
                           _IDENTITY_JOINED.alias("_identity"), *_WS_FLAGS)
    suspect = checked.drop_in_place("_suspect") | _identity_flags(frame, checked.drop_in_place("_identity"))
    # Descriptive fields: the few columns with anything unusual are looked at closer (a
    # forbidden character or a PAN form: Python; white space only: collapsed here).
    unusual = [name for name in DESCRIPTIVE_FIELDS if checked.get_column(f"_ws_{name}").any()]
    if unusual:
        closer = collect(frame.lazy().select(
            *[pl.col(name).str.contains(_COLUMN_DESCRIPTIVE_SUSPECT).fill_null(False)
              .alias(f"_hard_{name}") for name in unusual],
            *[pl.col(name).str.contains(_COLUMN_WHITESPACE).fill_null(False).alias(f"_ws_{name}")
              for name in unusual],
            *[_collapsed(name) for name in unusual],
        ).with_columns(
            # Collapsing can make a PAN form ("4111    1111 ..." has too many spaces in a
            # gap, "4111 1111 ..." does not): the collapsed text is checked again.
            pl.any_horizontal(
                *[pl.col(f"_hard_{name}") for name in unusual],
                *[pl.col(name).str.contains(_COLUMN_PAN).fill_null(False) for name in unusual],
            ).alias("_hard"),
        ))
        suspect = suspect | closer.get_column("_hard")
        for name in unusual:  # checked is this call's own: replaced in place
            checked.replace_column(checked.get_column_index(f"_ws_{name}"), closer.get_column(f"_ws_{name}"))
        checked = checked.hstack([closer.get_column(name) for name in unusual])
    return suspect.alias("_suspect"), checked


# Built once (a polars expression costs Python time to build, on every batch otherwise).
#: Each row's checks but the identity fields' and the descriptive fields' (one flag each).
_ROW_FLAGS: Final[list[pl.Expr]] = [
    # A pattern the unchecked decode skipped (Rust's `$` is the end of the text, so
    # it is stricter than Python's, which also matches before a final newline).
    *[pl.col(name).str.contains(pattern).not_().fill_null(False) for name, pattern in FIELD_PATTERNS.items()],
    (pl.col("merchant_id").str.contains(_COLUMN_IDENTITY_SUSPECT)
     & (pl.col("merchant_id").str.contains(_COLUMN_MERCHANT_ID_NUMBER)
        & pl.col("merchant_id").str.contains(_COLUMN_MERCHANT_ID_CARD_LENGTH).not_()).not_()).fill_null(False),
    (pl.col("occurred_at") < EARLIEST_EVENT_TIME) | (pl.col("occurred_at") >= LATEST_EVENT_TIME),
    pl.col("currency").is_in(pl.Series(sorted(CURRENCIES)).implode()).not_(),
    (pl.col("status") == "completed") & pl.col("response_code").is_null(),
]
#: The identity fields without a strict pattern, joined, might hold something forbidden or a PAN.
_IDENTITY_JOINED: Final = (pl.concat_str(_COLUMN_IDENTITY_FIELDS, separator=IDENTITY_JOINER, ignore_nulls=True)
                           .str.contains(_COLUMN_IDENTITY_SUSPECT).fill_null(False))
#: The closer look at a flagged row's identity fields (see :func:`_identity_flags`).
_IDENTITY_CLOSER: Final = pl.any_horizontal(
    (text.str.contains(r"[^\x20-\x7e]") | text.str.contains(_COLUMN_ASCII_GROUPED)
     | text.str.replace_all(_COLUMN_HEX_TOKEN, "x").str.contains("[0-9]{13}")).fill_null(False)
    for text in (pl.col(name) for name in _COLUMN_IDENTITY_FIELDS)
).alias("_closer")
#: Each descriptive field: anything unusual (white space to collapse, a forbidden character, a PAN form).
_WS_FLAGS: Final = [pl.col(name).str.contains(_COLUMN_DESCRIPTIVE_UNUSUAL).fill_null(False).alias(f"_ws_{name}")
                    for name in DESCRIPTIVE_FIELDS]
