"""Builders of classified batch frames for the health tests (windows, state, aggregation)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from monitor.pipeline.batch_frame import EVENT_SCHEMA

#: A Monday morning; every test's event times are offsets from it.
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

Batch = Callable[..., pl.DataFrame]


def make_batch(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A classified frame (EVENT_SCHEMA + ``outcome``) from rows of a few fields.

    Each row gives ``terminal_id`` and ``at`` (seconds after :data:`T0`) and optionally
    ``outcome`` (default approved), ``latency_ms``, ``entry_mode``, ``region``,
    ``branch_id``, ``merchant_id``, ``channel``; everything else gets a plain value.
    """
    full = []
    for n, row in enumerate(rows):
        values: dict[str, Any] = dict.fromkeys(EVENT_SCHEMA)
        values.update(event_id=f"e{n}", channel="POS", txn_type="purchase", amount_minor=1000,
                      currency="EUR", status="completed", response_code="00", latency_ms=120.0,
                      entry_mode="chip")
        extra = {k: v for k, v in row.items() if k not in ("at", "outcome")}
        values.update(extra)
        values["occurred_at"] = T0 + timedelta(seconds=row["at"])
        values["outcome"] = row.get("outcome", "approved")
        full.append(values)
    return pl.DataFrame(full, schema={**EVENT_SCHEMA, "outcome": pl.String()}, orient="row")


def at(seconds: float) -> datetime:
    """The instant ``seconds`` after :data:`T0`."""
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def batch() -> Batch:
    """The :func:`make_batch` builder."""
    return make_batch
