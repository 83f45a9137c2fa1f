"""The batch frame: a batch of decoded events as one polars DataFrame with the canonical schema.

Everything downstream of the decoder (classification, VIP lookup, policy,
metrics) works on this frame, column by column, never event by event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, Final

import polars as pl

from monitor.domain import TransactionEvent

__all__ = ["EVENT_SCHEMA", "events_frame"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

#: Column → dtype of a batch frame. ``occurred_at`` is normalised to UTC.
EVENT_SCHEMA: Final[dict[str, pl.DataType]] = {
    "event_id": pl.String(),
    "occurred_at": pl.Datetime("us", "UTC"),
    "channel": pl.String(),
    "terminal_id": pl.String(),
    "merchant_id": pl.String(),
    "merchant_name": pl.String(),
    "txn_type": pl.String(),
    "amount_minor": pl.Int64(),
    "currency": pl.String(),
    "card_ref": pl.String(),
    "pan_masked": pl.String(),
    "customer_id": pl.String(),
    "status": pl.String(),
    "response_code": pl.String(),
    "latency_ms": pl.Float64(),
    "entry_mode": pl.String(),
    "city": pl.String(),
    "region": pl.String(),
    "branch_id": pl.String(),
    "stan": pl.String(),
    "rrn": pl.String(),
}


def events_frame(events: Sequence[TransactionEvent],
                 extra: Mapping[str, pl.DataType] | None = None) -> pl.DataFrame:
    """Build the batch frame.

    Args:
        events: decoded events (their ``raw_pan`` is already ``None``); any objects with
            the attributes of :class:`~monitor.domain.TransactionEvent` will do.
        extra: more attributes to add as columns after the canonical ones, with their
            dtypes (the decoder's column checks use this).

    Returns:
        A DataFrame with exactly the columns of :data:`EVENT_SCHEMA` (then ``extra``), one
        row per event, in the given order. ``latency_ms`` is milliseconds,
        ``amount_minor`` minor units.
    """
    wanted: dict[str, Any] = {**EVENT_SCHEMA, **(extra or {})}
    columns = {
        name: pl.Series(name, list(map(attrgetter(name), events)), dtype=dtype)
        for name, dtype in wanted.items() if name != "occurred_at"
    }
    # Integer microseconds since the epoch, then one cast: five times faster than
    # handing polars timezone-aware datetime objects.
    columns["occurred_at"] = pl.Series(
        "occurred_at", [(event.occurred_at - _EPOCH) // _MICROSECOND for event in events],
        dtype=pl.Int64,
    ).cast(pl.Datetime("us", "UTC"))
    return pl.DataFrame(columns).select(list(wanted))
