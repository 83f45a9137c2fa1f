"""Decode a batch of Kafka message values into :class:`~monitor.events.TransactionEvent`.

The decoder is the privacy and validity gate of the pipeline:

* every value is decoded with one compiled msgspec decoder (strict types, no
  coercion), so a whole batch costs one tight loop;
* a message that breaks the contract becomes a :class:`Rejection` with a short
  machine-readable ``reason`` (used as the dead-letter header and metric label)
  and a human ``detail``; the messages around it are unaffected;
* a raw PAN sent in ``pan`` is masked into ``pan_masked`` and dropped (PCI DSS
  3.3/3.4); the event is processed and a PAN-scrubbed copy is also reported as a
  ``raw_pan`` rejection so the producer can be fixed;
* :func:`scrub_pans` removes any Luhn-valid 13–19 digit run from bytes before
  they are written anywhere (dead-letter topic, logs).
"""

from __future__ import annotations

import functools
import operator
import re
import types
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec
import polars as pl
from babel.numbers import list_currencies

from monitor.events import TransactionEvent
from monitor.frame import events_frame

__all__ = [
    "DecodedBatch",
    "DecodedFrame",
    "Rejection",
    "classify_decode_error",
    "decode_batch",
    "decode_frame",
    "is_pan",
    "mask_pan",
    "scrub_pans",
]

_decoder: Final = msgspec.json.Decoder(TransactionEvent)
_DIGITS: Final = re.compile(r"^[0-9]{13,19}$")
# Runs of at least 13 digits, with optional single spaces or dashes between groups;
# :func:`scrub_pans` looks for PANs inside each run along group boundaries.
_PAN_IN_TEXT: Final = re.compile(rb"(?<![0-9])[0-9](?:[ -]?[0-9]){12,}(?![0-9])")
_SEPARATOR: Final = re.compile(rb"([ -])")
# ISO 4217 codes known to CLDR (via Babel), including funds codes.
_CURRENCIES: Final[frozenset[str]] = frozenset(list_currencies())


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that could not become a valid event.

    Attributes:
        index: position of the message in the batch given to :func:`decode_batch`.
        reason: short code, one of ``invalid_utf8``, ``invalid_json``, ``not_an_object``,
            ``missing_field``, ``invalid_field``, ``naive_timestamp``,
            ``unknown_currency``, ``response_code_required``, ``pan_in_card_ref``,
            ``pan_in_field`` (a PAN in another text field), ``raw_pan`` (the event was
            still processed, with the PAN masked).
        detail: one line for a person; never contains a PAN.
    """

    index: int
    reason: str
    detail: str


@dataclass(slots=True)
class DecodedBatch:
    """The result of decoding one batch.

    Attributes:
        events: the valid events, in batch order.
        indices: for each event, its position in the input batch.
        rejections: one per invalid message (and one per scrubbed raw PAN).
    """

    events: list[TransactionEvent] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def luhn_valid(digits: str) -> bool:
    """Return whether a digit string passes the Luhn (mod 10) check of ISO/IEC 7812-1."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def is_pan(text: str) -> bool:
    """Return whether ``text`` looks like a full PAN: 13–19 digits that pass Luhn."""
    return bool(_DIGITS.match(text)) and luhn_valid(text)


def mask_pan(pan: str) -> str | None:
    """Mask a PAN to first six + last four digits (PCI DSS 3.4), ``None`` if not a PAN.

    Args:
        pan: the raw PAN; spaces and dashes are ignored.

    Returns:
        e.g. ``"411111******1111"``, or ``None`` when ``pan`` has not 13–19 digits.
    """
    digits = pan.replace(" ", "").replace("-", "")
    if not _DIGITS.match(digits):
        return None
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def _mask_run(match: re.Match[bytes]) -> bytes:
    # A run is digit groups joined by single spaces or dashes ("99 4111 1111 1111 1111").
    # A PAN starts at the run's start or after a separator and ends at the run's end or
    # before one; at each start the longest Luhn-valid 13-19 digit span is masked.
    parts = _SEPARATOR.split(match.group(0))  # [group, separator, group, ...]
    groups, separators = parts[0::2], parts[1::2]
    out: list[bytes] = []
    start = 0
    while start < len(groups):
        end, length, found = start, 0, -1
        while end < len(groups) and length + len(groups[end]) <= 19:
            length += len(groups[end])
            if length >= 13 and luhn_valid(b"".join(groups[start : end + 1]).decode()):
                found = end
            end += 1
        if found < 0:
            out.append(groups[start])
            found = start
        else:
            digits = b"".join(groups[start : found + 1])
            out.append(digits[:6] + b"*" * (len(digits) - 10) + digits[-4:])
        if found < len(separators):
            out.append(separators[found])
        start = found + 1
    return b"".join(out)


def scrub_pans(data: bytes) -> bytes:
    """Replace every Luhn-valid 13–19 digit PAN in ``data`` by its masked form.

    Digits may be grouped with single spaces or dashes (``4111 1111 1111 1111``);
    the masked form drops them (``411111******1111``). A PAN next to other digit
    groups (``ref 99 4111111111111111``) is found too; a run of more than 19
    digits without separators is not a PAN and is left alone.
    """
    return _PAN_IN_TEXT.sub(_mask_run, data)


def classify_decode_error(value: bytes,
                          error: msgspec.DecodeError | msgspec.ValidationError) -> tuple[str, str]:
    """The rejection ``(reason, detail)`` of a msgspec decode or validation error; no PAN in it."""
    # msgspec echoes bad enum values ("Invalid enum value '4111...'"): scrub PANs.
    message = scrub_pans(str(error).encode("utf-8", "backslashreplace")).decode("utf-8")
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


#: Text fields a producer fills in freely: none may carry a PAN or a control character.
_TEXT_FIELDS: Final = ("event_id", "terminal_id", "customer_id", "city", "region", "branch_id",
                       "merchant_id")
# Joins the text fields for one regex pass; a character no field may hold (it is a control one).
_JOIN: Final = "\x1f"
_CONTROL: Final = re.compile(r"[\x00-\x1e\x7f-\x9f\u2028\u2029]")
# A PAN as people write it: 13–19 digits in one run, or grouped 4-4-4-4(-1..3) or 4-6-5
# (Amex) with spaces or dashes. Other digit-dash identifiers (20240101-000123) are not PANs.
_PAN_CANDIDATE: Final = re.compile(
    r"(?<![0-9])(?:[0-9]{13,19}"
    r"|[0-9]{4}([ -])[0-9]{4}\1[0-9]{4}\1[0-9]{1,4}(?:\1[0-9]{1,3})?"
    r"|[0-9]{4}([ -])[0-9]{6}\2[0-9]{5})(?![0-9])"
)
#: ISO 8583 field 42 is 15 characters, often 15 digits: as long as an Amex PAN, so a
#: merchant ID is only taken for a PAN at 16 digits (Visa/Mastercard length), which no
#: standard merchant ID has. Longer ones (TabFormer's signed 19 digits) pass too.
_MERCHANT_ID_PAN_DIGITS: Final = 16
#: Event times outside this range are typos or broken clocks, not transactions. The upper
#: bound is fixed, not "now": replays rebased to now legitimately run into the future.
_EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)


def _pan_field(event: TransactionEvent) -> str | None:
    """Name of the first text field holding a Luhn-valid 13–19 digit run, else ``None``."""
    for name in _TEXT_FIELDS:
        text = getattr(event, name)
        if text is None:
            continue
        for match in _PAN_CANDIDATE.finditer(text):
            digits = match.group(0).replace(" ", "").replace("-", "")
            if name == "merchant_id" and len(digits) != _MERCHANT_ID_PAN_DIGITS:
                continue
            if luhn_valid(digits):
                return name
    if event.decline_reasons and any(scrub_pans(r.encode()) != r.encode() for r in event.decline_reasons):
        return "decline_reasons"
    return None


def _check(event: TransactionEvent) -> tuple[str, str] | None:
    texts = _JOIN.join(t for t in (event.event_id, event.terminal_id, event.customer_id, event.city,
                                   event.region, event.branch_id, event.merchant_id) if t)
    if _CONTROL.search(texts):
        return "invalid_field", "a text field holds a control character or line separator"
    if _PAN_CANDIDATE.search(texts) or event.decline_reasons:
        field_name = _pan_field(event)
        if field_name is not None:
            return "pan_in_field", f"{field_name} holds a PAN; card numbers belong nowhere but pan_masked"
    if not _EARLIEST <= event.occurred_at < _LATEST:
        return "invalid_field", "occurred_at is not between 1970 and 2100"
    if event.currency not in _CURRENCIES:
        return "unknown_currency", f"currency {event.currency!r} is not an ISO 4217 code"
    if event.status == "completed" and event.response_code is None:
        return "response_code_required", "response_code is required unless status is 'timeout'"
    if is_pan(event.card_ref.replace(" ", "").replace("-", "")):
        return "pan_in_card_ref", "card_ref is a PAN; send a token or hash of the card"
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
            masked = mask_pan(event.raw_pan)  # type: ignore[arg-type]
            event.raw_pan = None
            if event.pan_masked is None and masked is not None:
                event.pan_masked = masked
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

#: Conservative column versions of _check's text rules (Rust regex: no look-around, no
#: back-references). A row matching none of them passes _check's control character and
#: PAN rules; _PAN_CANDIDATE's three shapes each contain one of these.
_COLUMN_CONTROL: Final = r"[\x00-\x1e\x7f-\x9f\x{2028}\x{2029}]"
_COLUMN_GROUPED_PAN: Final = r"[0-9]{4}[ -][0-9]{4}[ -][0-9]{4}[ -][0-9]|[0-9]{4}[ -][0-9]{6}[ -][0-9]{5}"
_COLUMN_TEXT_SUSPECT: Final = f"{_COLUMN_CONTROL}|{_COLUMN_GROUPED_PAN}|[0-9]{{13}}"
# merchant_id: only a 16-digit candidate counts (_MERCHANT_ID_PAN_DIGITS); a bare digit
# run is a candidate only as a whole run (13-19 digits between non-digits).
_COLUMN_MERCHANT_SUSPECT: Final = (
    f"{_COLUMN_CONTROL}|{_COLUMN_GROUPED_PAN}"
    f"|(?:^|[^0-9])[0-9]{{{_MERCHANT_ID_PAN_DIGITS}}}(?:[^0-9]|$)"
)
# Columns of the unchecked decode that only the checks need (not part of the frame).
_CHECK_ONLY: Final[dict[str, pl.DataType]] = {"mti": pl.String(), "processing_code": pl.String()}


def _suspect(frame: pl.DataFrame) -> pl.Series:
    """True for each row that decode_batch might reject or change (see the section comment)."""
    flags: list[pl.Expr] = [
        # A pattern the unchecked decode skipped (Rust's `$` is the end of the text, so
        # it is stricter than Python's, which also matches before a final newline).
        pl.col(name).str.contains(pattern).not_().fill_null(False)
        for name, pattern in _PATTERNS.items()
    ]
    flags += [
        pl.col(name).str.contains(
            _COLUMN_MERCHANT_SUSPECT if name == "merchant_id" else _COLUMN_TEXT_SUSPECT
        ).fill_null(False)
        for name in _TEXT_FIELDS
    ]
    flags += [
        (pl.col("occurred_at") < _EARLIEST) | (pl.col("occurred_at") >= _LATEST),
        pl.col("currency").is_in(pl.Series(sorted(_CURRENCIES)).implode()).not_(),
        (pl.col("status") == "completed") & pl.col("response_code").is_null(),
        # is_pan(card_ref without spaces and dashes) needs digits, maybe one final newline.
        pl.col("card_ref").str.contains(r"^[0-9 \n-]+$"),
    ]
    return frame.select(pl.any_horizontal(flags).alias("suspect")).to_series()


@dataclass(slots=True)
class DecodedFrame:
    """One batch decoded straight into the batch frame (see :func:`decode_frame`).

    Attributes:
        frame: the valid events as :func:`monitor.frame.events_frame` builds them, in
            batch order.
        indices: for each row of ``frame``, its position in the input batch.
        rejections: one per invalid message (and one per scrubbed raw PAN), by index.
    """

    frame: pl.DataFrame
    indices: list[int] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def decode_frame(values: list[bytes | None]) -> DecodedFrame:
    """Decode Kafka message values into the batch frame, with the checks run per column.

    The result is exactly ``events_frame(decode_batch(values).events)`` with the same
    indices and rejections: every message the column checks cannot clear is decoded by
    :func:`decode_batch` itself.

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
    if rows:
        suspect = _suspect(frame)
        if suspect.any():
            flagged = suspect.to_list()
            slow.extend(i for i, bad in zip(row_indices, flagged) if bad)
            slow.sort()
            row_indices = [i for i, bad in zip(row_indices, flagged) if not bad]
            frame = frame.filter(~suspect)
    frame = frame.drop(list(_CHECK_ONLY))
    if not slow:
        return DecodedFrame(frame, row_indices, [])
    reference = decode_batch([values[i] for i in slow])
    rejections = [Rejection(slow[r.index], r.reason, r.detail) for r in reference.rejections]
    if not reference.events:
        return DecodedFrame(frame, row_indices, rejections)
    slow_indices = [slow[i] for i in reference.indices]
    if not row_indices:
        return DecodedFrame(events_frame(reference.events), slow_indices, rejections)
    merged = pl.concat([
        frame.with_columns(pl.Series("_index", row_indices, dtype=pl.Int64)),
        events_frame(reference.events).with_columns(pl.Series("_index", slow_indices, dtype=pl.Int64)),
    ]).sort("_index")
    indices = merged.get_column("_index").to_list()
    return DecodedFrame(merged.drop("_index"), indices, rejections)
