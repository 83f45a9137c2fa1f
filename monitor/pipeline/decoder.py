"""Decode a batch of Kafka message values into the batch frame: the pipeline's privacy and validity gate.

:func:`decode_frame` is what the pipeline calls. Its result is exactly that of the
reference decoder, :func:`monitor.pipeline.reference_decoder.decode_batch` (which says
what is valid: the contract's text rules, PAN masking, rejections with a reason), fed to
:func:`monitor.pipeline.batch_frame.events_frame`; it gets there faster by checking whole
columns (:mod:`monitor.pipeline.column_checks`) and sending only the messages those
checks cannot clear through the reference.

The reference decoder's names (:class:`Rejection`, :class:`DecodedBatch`,
:func:`decode_batch`, :func:`classify_decode_error`) are re-exported here, so the
decoder is one import for its callers. Importing this module loads no Kafka,
PostgreSQL or HTTP code.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from monitor.pipeline.batch_frame import events_frame
from monitor.pipeline.column_checks import CHECK_ONLY_COLUMNS, check_columns, unchecked_decoder
from monitor.pipeline.contract import DESCRIPTIVE_FIELDS
from monitor.pipeline.reference_decoder import (
    DecodedBatch,
    Rejection,
    Sanitised,
    classify_decode_error,
    decode_batch,
)

__all__ = [
    "DecodedBatch",
    "DecodedFrame",
    "Rejection",
    "Sanitised",
    "classify_decode_error",
    "decode_batch",
    "decode_frame",
]


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

    Args:
        values: raw message values in batch order; ``None`` is a tombstone and is rejected.

    Returns:
        A :class:`DecodedFrame`. Never raises on bad input.
    """
    decode = unchecked_decoder.decode
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
    frame = events_frame(rows, extra=CHECK_ONLY_COLUMNS)
    sanitised: Counter[Sanitised] = Counter()
    if rows:
        suspect, cleaned = check_columns(frame)
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
    frame = frame.drop(list(CHECK_ONLY_COLUMNS))
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
