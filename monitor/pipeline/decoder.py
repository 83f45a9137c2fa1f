"""Decode a batch of Kafka message values into the batch frame: the pipeline's privacy and validity gate.

:func:`decode_frame` is what the pipeline calls. Its result is exactly that of the
reference decoder, :func:`monitor.pipeline.reference_decoder.decode_batch` (which says
what is valid: the contract's text rules, PAN masking, rejections with a reason), fed to
:func:`monitor.pipeline.batch_frame.events_frame`; it gets there faster in three tiers:

1. the batch's one-line JSON objects are read into columns by Arrow's JSON reader in one
   call, outside the GIL (:mod:`monitor.pipeline.json_lines`: strict JSON types,
   duplicated keys refused, each field's msgspec constraints checked per column);
2. the messages Arrow read but cannot judge (a raw PAN, decline reasons, no status, an
   unusual time spelling) are decoded one by one with msgspec, without string patterns;
3. the string patterns and the contract's text rules are checked on whole columns
   (:mod:`monitor.pipeline.column_checks`), and every message that Arrow was not given
   or refused, or that any check cannot clear, goes through the reference itself.

The reference decoder's names (:class:`Rejection`, :class:`DecodedBatch`,
:func:`decode_batch`, :func:`classify_decode_error`) are re-exported here, so the
decoder is one import for its callers. Importing this module loads no Kafka,
PostgreSQL or HTTP code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import polars as pl

from monitor.pipeline.batch_frame import EVENT_SCHEMA, events_frame
from monitor.pipeline.column_checks import CHECK_ONLY_COLUMNS, check_columns, unchecked_decoder
from monitor.pipeline.contract import DESCRIPTIVE_FIELDS
from monitor.pipeline.json_lines import read_plain_lines, shape_flags
from monitor.pipeline.reference_decoder import (
    DecodedBatch,
    Rejection,
    Sanitised,
    classify_decode_error,
    decode_batch,
)

__all__ = [
    "REFERENCE_BATCH_MAX",
    "DecodedBatch",
    "DecodedFrame",
    "Rejection",
    "Sanitised",
    "classify_decode_error",
    "decode_batch",
    "decode_frame",
]


#: Batches of at most this many messages go through the reference decoder alone: the
#: column checks cost ~3 ms per batch whatever its size (a few dozen polars expressions),
#: the reference ~20-30 µs per message (measured: 1 message 0.6 ms against 3.6 ms, 64
#: messages 2.4 ms against 3.9 ms, even at ~128). Small live batches pay per message.
REFERENCE_BATCH_MAX: Final = 64
#: The fast path's columns before the checks: the batch frame's, then the checks' own.
_FRAME_COLUMNS: Final = (*EVENT_SCHEMA, *CHECK_ONLY_COLUMNS)


@dataclass(slots=True)
class DecodedFrame:
    """One batch decoded straight into the batch frame (see :func:`decode_frame`).

    Attributes:
        frame: the valid events as :func:`monitor.pipeline.batch_frame.events_frame` builds them, in
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

    A batch of at most :data:`REFERENCE_BATCH_MAX` messages is decoded by
    :func:`decode_batch` alone (the same result, cheaper for so few).

    Args:
        values: raw message values in batch order; ``None`` is a tombstone and is rejected.

    Returns:
        A :class:`DecodedFrame`. Never raises on bad input.
    """
    if len(values) <= REFERENCE_BATCH_MAX:
        reference = decode_batch(values)
        return DecodedFrame(events_frame(reference.events), reference.indices, reference.rejections,
                            reference.sanitised)
    frame, row_indices, slow = _fast_rows(values)
    sanitised: Counter[Sanitised] = Counter()
    kept: pl.Series | None = None  # rows of ``frame`` to keep (None: all)
    if row_indices:
        suspect, cleaned = check_columns(frame)
        ws = [pl.col(f"_ws_{name}") for name in DESCRIPTIVE_FIELDS]
        if suspect.any():
            flagged = suspect.to_list()
            slow.extend(i for i, bad in zip(row_indices, flagged) if bad)
            slow.sort()
            kept = ~suspect
            ws = [flag & kept for flag in ws]
        # The suspect rows are left out below: only the others' changes count.
        changed = cleaned.select(flag.sum() for flag in ws).row(0)
        if any(changed):
            frame = frame.with_columns(cleaned.select(
                name for name, count in zip(DESCRIPTIVE_FIELDS, changed) if count))
            sanitised.update({(name, "text"): count
                              for name, count in zip(DESCRIPTIVE_FIELDS, changed) if count})
    frame = frame.drop(list(CHECK_ONLY_COLUMNS))
    if not slow:
        return DecodedFrame(frame, row_indices, [], sanitised)
    reference = decode_batch([values[i] for i in slow])
    rejections = [Rejection(slow[r.index], r.reason, r.detail) for r in reference.rejections]
    sanitised.update(reference.sanitised)
    # The batch in its order, in one gather: the fast rows not flagged, then the
    # reference's events, by their position in the batch.
    position: list[int] = [-1] * len(values)  # <batch index: row of fast + reference frames>
    flags = kept.to_list() if kept is not None else [True] * len(row_indices)
    for row, (index, keep) in enumerate(zip(row_indices, flags)):
        if keep:
            position[index] = row
    for row, i in enumerate(reference.indices, start=len(row_indices)):
        position[slow[i]] = row
    indices = [index for index, row in enumerate(position) if row >= 0]
    order = [row for row in position if row >= 0]
    if reference.events:
        frame = pl.concat([frame, events_frame(reference.events)], rechunk=False)
    return DecodedFrame(frame[order] if order != list(range(frame.height)) else frame,
                        indices, rejections, sanitised)


def _fast_rows(values: list[bytes | None]) -> tuple[pl.DataFrame, list[int], list[int]]:
    """The rows of the fast path before the column checks, and the messages for the reference.

    Plain messages are read by Arrow in one block (:func:`read_plain_lines`, outside
    the GIL); those Arrow read but whose values it cannot judge (a raw PAN, decline
    reasons, no status, a constraint or time spelling not checked per column) are
    decoded one by one with :data:`unchecked_decoder` (no string pattern: the column
    checks do those); the messages Arrow was not given or refused, and those the
    unchecked decoder fails on or that carry a raw PAN or decline reasons, go to the
    reference.

    Returns:
        ``(frame, row_indices, slow)``: the frame has the columns of :data:`EVENT_SCHEMA`
        then :data:`CHECK_ONLY_COLUMNS`, one row per position of ``row_indices``
        (ascending); ``slow`` lists the positions for :func:`decode_batch`, ascending.
    """
    read = read_plain_lines(values)
    slow: list[int] = read.refused
    frames: list[pl.DataFrame] = []
    row_indices = read.indices
    others: list[int] = []
    if read.frame is not None:
        bad, times = shape_flags(read.frame)
        frame = read.frame.with_columns(times)
        if bad.any():  # read by Arrow, so no duplicated field: msgspec decides them one by one
            flagged = bad.to_list()
            others = [i for i, out in zip(row_indices, flagged) if out]
            row_indices = [i for i, out in zip(row_indices, flagged) if not out]
            frame = frame.filter(~bad)
        if row_indices:
            frames.append(frame.select(list(_FRAME_COLUMNS)))
    if others:
        other_frame, other_indices, other_slow = _per_message(values, others)
        if other_indices:
            frames.append(other_frame)
            row_indices = row_indices + other_indices
        slow = sorted([*slow, *other_slow])
    if not frames:
        return events_frame([], extra=CHECK_ONLY_COLUMNS), [], slow
    frame = pl.concat(frames, rechunk=False) if len(frames) > 1 else frames[0]
    if any(a > b for a, b in zip(row_indices, row_indices[1:])):  # both paths: batch order
        order = sorted(range(len(row_indices)), key=row_indices.__getitem__)
        frame = frame[order]
        row_indices = [row_indices[i] for i in order]
    return frame, row_indices, slow


def _per_message(values: list[bytes | None],
                 positions: Iterable[int]) -> tuple[pl.DataFrame, list[int], list[int]]:
    """The messages at ``positions`` decoded one by one (see :func:`_fast_rows`)."""
    decode = unchecked_decoder.decode
    rows: list[Any] = []
    row_indices: list[int] = []
    slow: list[int] = []  # positions for the reference decoder
    for index in positions:
        try:
            row: Any = decode(values[index])  # type: ignore[arg-type]  # None raises: slow path
        except Exception:  # noqa: BLE001 (the reference path reports it, or raises it again)
            slow.append(index)
            continue
        if row.raw_pan is not None or row.decline_reasons is not None:  # masking, Luhn scans
            slow.append(index)
            continue
        rows.append(row)
        row_indices.append(index)
    return events_frame(rows, extra=CHECK_ONLY_COLUMNS), row_indices, slow
