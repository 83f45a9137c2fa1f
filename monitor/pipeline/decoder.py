"""Decode a batch of Kafka message values into :class:`~monitor.domain.TransactionEvent`.

The decoder is the privacy and validity gate of the pipeline:

* every value is decoded with one compiled msgspec decoder (strict types, no
  coercion), so a whole batch costs one tight loop;
* a message that breaks the contract becomes a :class:`Rejection` with a short
  machine-readable ``reason`` (used as the dead-letter header and metric label)
  and a human ``detail``; the messages around it are unaffected;
* text fields follow :mod:`monitor.pipeline.contract`: an identity field (event, terminal, card,
  client or merchant ID, an ISO 8583 id) holding a control or invisible character or
  a PAN form rejects the event; a descriptive field (merchant name, city, region,
  branch) is cleaned and any PAN form in it masked, the event is processed and the
  change counted (:attr:`DecodedBatch.sanitised`);
* a raw PAN sent in ``pan`` (any JSON type) is masked into ``pan_masked`` and dropped
  (PCI DSS 3.3/3.4); the event is processed and a ``raw_pan`` rejection is also
  reported so the producer can be fixed (its dead-letter copy never holds ``pan``:
  :func:`monitor.privacy.dead_letter_copy`).

PAN detection, masking and scrubbing live in :mod:`monitor.privacy`.
"""

from __future__ import annotations

import functools
import operator
import re
import types
import typing
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec
import polars as pl
from babel.numbers import list_currencies

from monitor.domain import TransactionEvent
from monitor.pipeline.contract import (
    DESCRIPTIVE_FIELDS,
    DESCRIPTIVE_LIST_FIELDS,
    FORBIDDEN_IN_IDENTITY_CLASS,
    IDENTITY_FIELDS,
    MERCHANT_ID_PAN_DIGITS,
    clean_descriptive,
    identity_problem,
)
from monitor.pipeline.frame import events_frame
from monitor.privacy import (
    ASCII_SEPARATOR_CLASS,
    NFKC_DIGITS,
    PAN_MAX_DIGITS,
    PAN_MIN_DIGITS,
    mask_pan,
    mask_pans,
)

__all__ = [
    "DecodedBatch",
    "DecodedFrame",
    "Rejection",
    "classify_decode_error",
    "decode_batch",
    "decode_frame",
]

_decoder: Final = msgspec.json.Decoder(TransactionEvent)
# ISO 4217 codes known to CLDR (via Babel), including funds codes.
_CURRENCIES: Final[frozenset[str]] = frozenset(list_currencies())
#: What one line of a rejection detail (a Kafka header) or an identity field may not hold.
_DETAIL_CONTROL: Final = re.compile(FORBIDDEN_IN_IDENTITY_CLASS)
# Joins identity values for one search: a private-use character, not forbidden.
_JOIN: Final = "\ue000"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that could not become a valid event.

    Attributes:
        index: position of the message in the batch given to :func:`decode_batch`.
        reason: short code, one of ``invalid_utf8``, ``invalid_json``, ``not_an_object``,
            ``missing_field``, ``invalid_field`` (including a control or invisible
            character in an identity field), ``naive_timestamp``,
            ``unknown_currency``, ``response_code_required``, ``pan_in_card_ref``,
            ``pan_in_field`` (a PAN in another identity field), ``raw_pan`` (the
            event was still processed, with the PAN masked).
        detail: one line for a person; never contains a PAN or a field's value.
    """

    index: int
    reason: str
    detail: str


#: A change the decoder made to a valid event: ``(field, change)`` with change ``text``
#: (control, invisible or white-space characters cleaned) or ``pan`` (a PAN masked).
Sanitised = tuple[str, str]


@dataclass(slots=True)
class DecodedBatch:
    """The result of decoding one batch.

    Attributes:
        events: the valid events, in batch order.
        indices: for each event, its position in the input batch.
        rejections: one per invalid message (and one per scrubbed raw PAN).
        sanitised: events whose descriptive fields were changed, per
            ``(field, change)`` (see :data:`Sanitised`); valid events only.
    """

    events: list[TransactionEvent] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    sanitised: Counter[Sanitised] = field(default_factory=Counter)


def classify_decode_error(value: bytes,
                          error: msgspec.DecodeError | msgspec.ValidationError) -> tuple[str, str]:
    """The rejection ``(reason, detail)`` of a msgspec decode or validation error.

    msgspec echoes bad values (``Invalid enum value '4111...'``): every PAN form in the
    message is masked (escapes read too) and control characters become spaces, so the
    detail is one line without a PAN.
    """
    message = _DETAIL_CONTROL.sub(" ", mask_pans(str(error)))
    if isinstance(error, msgspec.ValidationError):
        if message.startswith("Object missing required field"):
            return "missing_field", message
        if "timezone" in message or "tz" in message:
            return "naive_timestamp", message
        if message.startswith("Expected `object`"):
            return "not_an_object", message
        return "invalid_field", message
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8", "message is not valid UTF-8"
    return "invalid_json", message


#: Event times outside this range are typos or broken clocks, not transactions. The upper
#: bound is fixed, not "now": replays rebased to now legitimately run into the future.
_EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)


def _sanitise(event: TransactionEvent, changes: list[Sanitised]) -> None:
    """Clean the descriptive fields of ``event`` in place; append what changed to ``changes``."""
    for name in DESCRIPTIVE_FIELDS:
        text = getattr(event, name)
        if text is None:
            continue
        cleaned = clean_descriptive(text)
        if cleaned.text_changed or cleaned.pan_masked:
            setattr(event, name, cleaned.value)
            if cleaned.text_changed:
                changes.append((name, "text"))
            if cleaned.pan_masked:
                changes.append((name, "pan"))
    for name in DESCRIPTIVE_LIST_FIELDS:
        items = getattr(event, name)
        if not items:
            continue
        results = [clean_descriptive(item) for item in items]
        if any(r.text_changed or r.pan_masked for r in results):
            kept = [r.value for r in results if r.value is not None]
            setattr(event, name, kept or None)
            if any(r.text_changed for r in results):
                changes.append((name, "text"))
            if any(r.pan_masked for r in results):
                changes.append((name, "pan"))


def _check(event: TransactionEvent) -> tuple[str, str] | None:
    present = [(name, text) for name in IDENTITY_FIELDS if (text := getattr(event, name)) is not None]
    # One search for a forbidden character in all of them; without one, only a value
    # long enough for a PAN can hold a problem. Fields are checked in contract order.
    if _DETAIL_CONTROL.search(_JOIN.join(text for _, text in present)) is None:
        present = [(name, text) for name, text in present if len(text) >= PAN_MIN_DIGITS]
    for name, text in present:
        problem = identity_problem(name, text)
        if problem is not None:
            return problem
    if not _EARLIEST <= event.occurred_at < _LATEST:
        return "invalid_field", "occurred_at is not between 1970 and 2100"
    if event.currency not in _CURRENCIES:
        return "unknown_currency", f"currency {event.currency!r} is not an ISO 4217 code"
    if event.status == "completed" and event.response_code is None:
        return "response_code_required", "response_code is required unless status is 'timeout'"
    return None


def _raw_pan_masked(value: Any) -> str | None:
    """The mask of a raw ``pan`` value of any JSON type, ``None`` if it is not a PAN."""
    if isinstance(value, str):
        return mask_pan(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return mask_pan(str(value))
    return None


def decode_batch(values: list[bytes | None]) -> DecodedBatch:
    """Decode Kafka message values into events.

    Args:
        values: raw message values in batch order; ``None`` is a tombstone and is rejected.

    Returns:
        A :class:`DecodedBatch`. Never raises on bad input: every message is either an
        event or a rejection (a message with a raw PAN is both, the event carrying only
        the masked PAN).
    """
    batch = DecodedBatch()
    events, indices, rejections = batch.events, batch.indices, batch.rejections
    decode = _decoder.decode
    for index, value in enumerate(values):
        if value is None:
            rejections.append(Rejection(index, "invalid_json", "empty message (tombstone)"))
            continue
        try:
            event = decode(value)
        except RecursionError:
            rejections.append(Rejection(index, "invalid_json", "JSON nested too deeply"))
            continue
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            reason, detail = classify_decode_error(value, error)
            rejections.append(Rejection(index, reason, detail))
            continue
        had_raw_pan = event.raw_pan is not None
        if had_raw_pan:
            masked = _raw_pan_masked(event.raw_pan)
            event.raw_pan = None
            if event.pan_masked is None and masked is not None:
                event.pan_masked = masked
        changes: list[Sanitised] = []
        _sanitise(event, changes)
        problem = _check(event)
        if problem is not None:
            reason, detail = problem
            if had_raw_pan:
                detail += "; it also carried a raw PAN in field 'pan'"
            rejections.append(Rejection(index, reason, detail))
            continue
        if had_raw_pan:
            rejections.append(
                Rejection(index, "raw_pan", "raw PAN in field 'pan': masked and dropped (PCI DSS)")
            )
        events.append(event)
        indices.append(index)
        batch.sanitised.update(changes)
    return batch


# --- the columnar fast path ----------------------------------------------------------
#
# decode_batch is the reference. decode_frame gets the same result faster: it decodes with
# a copy of TransactionEvent whose string patterns are dropped (msgspec runs Python's `re`
# for each pattern of each event), checks the patterns and the rules of _check on whole
# columns, and sends every message that fails or might fail any of them — or that the
# copy could not decode — through decode_batch itself. The column checks only need to
# be conservative (flag every row the reference might reject or change); a flagged row
# that turns out valid simply takes the slower path.


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


_UncheckedEvent, _PATTERNS = _unchecked_event()
_unchecked_decoder: Final = msgspec.json.Decoder(_UncheckedEvent)

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
# Columns of the unchecked decode that only the checks need (not part of the frame).
_CHECK_ONLY: Final[dict[str, pl.DataType]] = {"mti": pl.String(), "processing_code": pl.String()}


def _collapsed(name: str) -> pl.Expr:
    """The descriptive column ``name`` with its white space collapsed and trimmed, ``""`` as null."""
    text = pl.col(name).str.replace_all(r"\s+", " ").str.strip_chars(" ")
    return pl.when(text == "").then(None).otherwise(text).alias(name)


def _identity_flags(frame: pl.DataFrame) -> pl.Series:
    """Rows whose identity fields without a strict pattern might be rejected.

    One pass over the fields joined (by a private-use character: not a digit, separator,
    invisible or forbidden one, so no PAN form spans two fields), then the flagged rows
    (few) looked at closer, field by field: a value of printable ASCII whose only
    13-digit runs lie in hex strings is cleared (see _COLUMN_HEX_TOKEN).
    """
    joined = frame.select(pl.concat_str(_COLUMN_IDENTITY_FIELDS, separator=_JOIN, ignore_nulls=True)
                          .str.contains(_COLUMN_IDENTITY_SUSPECT).fill_null(False)).to_series()
    if not joined.any():
        return joined
    at = joined.arg_true()
    flagged = frame.select(pl.col(_COLUMN_IDENTITY_FIELDS).gather(at))
    closer = flagged.select(pl.any_horizontal(
        (text.str.contains(r"[^\x20-\x7e]") | text.str.contains(_COLUMN_ASCII_GROUPED)
         | text.str.replace_all(_COLUMN_HEX_TOKEN, "x").str.contains("[0-9]{13}")).fill_null(False)
        for text in (pl.col(name) for name in _COLUMN_IDENTITY_FIELDS)
    )).to_series()
    return joined.scatter(at, closer)


def _checked(frame: pl.DataFrame) -> tuple[pl.Series, pl.DataFrame]:
    """The rows decode_batch might reject or change beyond white space, and the cleaned columns.

    Returns:
        ``suspect`` (True: send the row to decode_batch) and, row for row, one
        ``_ws_<name>`` flag per descriptive field (True: its white space is to be
        collapsed; only meaningful where ``suspect`` is False) and the collapsed column
        of each field that has a flag set.
    """
    flags: list[pl.Expr] = [
        # A pattern the unchecked decode skipped (Rust's `$` is the end of the text, so
        # it is stricter than Python's, which also matches before a final newline).
        pl.col(name).str.contains(pattern).not_().fill_null(False)
        for name, pattern in _PATTERNS.items()
    ]
    flags.append(_identity_flags(frame))
    merchant = pl.col("merchant_id")
    flags.append((merchant.str.contains(_COLUMN_IDENTITY_SUSPECT)
                  & (merchant.str.contains(_COLUMN_MERCHANT_ID_NUMBER)
                     & merchant.str.contains(_COLUMN_MERCHANT_ID_CARD_LENGTH).not_()).not_()).fill_null(False))
    flags += [
        (pl.col("occurred_at") < _EARLIEST) | (pl.col("occurred_at") >= _LATEST),
        pl.col("currency").is_in(pl.Series(sorted(_CURRENCIES)).implode()).not_(),
        (pl.col("status") == "completed") & pl.col("response_code").is_null(),
    ]
    # Descriptive fields: one pass for anything unusual; the few columns with some are
    # looked at closer (a forbidden character or a PAN form: Python; white space only:
    # collapsed here).
    checked = frame.select(
        pl.any_horizontal(flags).alias("_suspect"),
        *[pl.col(name).str.contains(_COLUMN_DESCRIPTIVE_UNUSUAL).fill_null(False).alias(f"_ws_{name}")
          for name in DESCRIPTIVE_FIELDS],
    )
    unusual = [name for name in DESCRIPTIVE_FIELDS if checked.get_column(f"_ws_{name}").any()]
    if unusual:
        closer = frame.select(
            *[pl.col(name).str.contains(_COLUMN_DESCRIPTIVE_SUSPECT).fill_null(False)
              .alias(f"_hard_{name}") for name in unusual],
            *[pl.col(name).str.contains(_COLUMN_WHITESPACE).fill_null(False).alias(f"_ws_{name}")
              for name in unusual],
            *[_collapsed(name) for name in unusual],
        )
        # Collapsing can make a PAN form ("4111    1111 ..." has too many spaces in a gap,
        # "4111 1111 ..." does not): the collapsed text is checked again.
        hard = closer.select(pl.any_horizontal(
            *[pl.col(f"_hard_{name}") for name in unusual],
            *[pl.col(name).str.contains(_COLUMN_PAN).fill_null(False) for name in unusual],
        )).to_series()
        checked = checked.with_columns(
            (pl.col("_suspect") | hard).alias("_suspect"),
            *[closer.get_column(f"_ws_{name}") for name in unusual],
            *[closer.get_column(name) for name in unusual],
        )
    return checked.get_column("_suspect"), checked.drop("_suspect")


@dataclass(slots=True)
class DecodedFrame:
    """One batch decoded straight into the batch frame (see :func:`decode_frame`).

    Attributes:
        frame: the valid events as :func:`monitor.pipeline.frame.events_frame` builds them, in
            batch order.
        indices: for each row of ``frame``, its position in the input batch.
        rejections: one per invalid message (and one per scrubbed raw PAN), by index.
        sanitised: events whose descriptive fields were changed, per ``(field, change)``.
    """

    frame: pl.DataFrame
    indices: list[int] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    sanitised: Counter[Sanitised] = field(default_factory=Counter)


def decode_frame(values: list[bytes | None]) -> DecodedFrame:
    """Decode Kafka message values into the batch frame, with the checks run per column.

    The result is exactly ``events_frame(decode_batch(values).events)`` with the same
    indices, rejections and sanitised counts: white space in descriptive fields is
    collapsed per column, and every message the column checks cannot clear otherwise
    is decoded by :func:`decode_batch` itself.

    Args:
        values: raw message values in batch order; ``None`` is a tombstone and is rejected.

    Returns:
        A :class:`DecodedFrame`. Never raises on bad input.
    """
    decode = _unchecked_decoder.decode
    rows: list[Any] = []
    row_indices: list[int] = []
    slow: list[int] = []  # positions for the reference decoder
    for index, value in enumerate(values):
        try:
            row: Any = decode(value)  # type: ignore[arg-type]  # None raises: slow path
        except Exception:  # noqa: BLE001 (the reference path reports it, or raises it again)
            slow.append(index)
            continue
        if row.raw_pan is not None or row.decline_reasons is not None:  # masking, Luhn scans
            slow.append(index)
            continue
        rows.append(row)
        row_indices.append(index)
    frame = events_frame(rows, extra=_CHECK_ONLY)
    sanitised: Counter[Sanitised] = Counter()
    if rows:
        suspect, cleaned = _checked(frame)
        if suspect.any():
            flagged = suspect.to_list()
            slow.extend(i for i, bad in zip(row_indices, flagged) if bad)
            slow.sort()
            row_indices = [i for i, bad in zip(row_indices, flagged) if not bad]
            frame, cleaned = frame.filter(~suspect), cleaned.filter(~suspect)
        changed = cleaned.select(pl.col(f"_ws_{name}").sum() for name in DESCRIPTIVE_FIELDS).row(0)
        if any(changed):
            frame = frame.with_columns(cleaned.select(
                name for name, count in zip(DESCRIPTIVE_FIELDS, changed) if count))
            sanitised.update({(name, "text"): count
                              for name, count in zip(DESCRIPTIVE_FIELDS, changed) if count})
    frame = frame.drop(list(_CHECK_ONLY))
    if not slow:
        return DecodedFrame(frame, row_indices, [], sanitised)
    reference = decode_batch([values[i] for i in slow])
    rejections = [Rejection(slow[r.index], r.reason, r.detail) for r in reference.rejections]
    sanitised.update(reference.sanitised)
    if not reference.events:
        return DecodedFrame(frame, row_indices, rejections, sanitised)
    slow_indices = [slow[i] for i in reference.indices]
    if not row_indices:
        return DecodedFrame(events_frame(reference.events), slow_indices, rejections, sanitised)
    merged = pl.concat([
        frame.with_columns(pl.Series("_index", row_indices, dtype=pl.Int64)),
        events_frame(reference.events).with_columns(pl.Series("_index", slow_indices, dtype=pl.Int64)),
    ]).sort("_index")
    indices = merged.get_column("_index").to_list()
    return DecodedFrame(merged.drop("_index"), indices, rejections, sanitised)
