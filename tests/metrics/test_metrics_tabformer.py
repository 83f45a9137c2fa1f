"""PipelineMetrics on the real TabFormer User0 sample (read and classified by the project)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from prometheus_client import CollectorRegistry

from monitor.domain import CHANNELS, OUTCOMES
from monitor.metrics import PipelineMetrics
from monitor.pipeline.classify import default_table
from simulators.sources.tabformer import read_tabformer

VIP_CARD = "U0-C1"


def _classified(path: Path) -> pl.DataFrame:
    frame = default_table().classify(read_tabformer(path))
    # TabFormer has no latency and no VIP registry: card 1 plays a gold client.
    return frame.with_columns(
        pl.lit(None, dtype=pl.Float64).alias("latency_ms"),
        pl.when(pl.col("card_ref") == VIP_CARD).then(pl.lit("gold")).alias("tier"),
    )


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_tabformer_totals_match_the_csv(tabformer_csv: Path) -> None:
    """Totals, failures, VIP failures and the latest terminal timestamp match the raw CSV."""
    with tabformer_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    failed = [r for r in rows if r["Errors?"]]
    technical = [r for r in failed if "Technical Glitch" in r["Errors?"]]
    vip_failed = [r for r in failed if r["Card"] == "1"]
    latest = max(
        datetime.strptime(f"{r['Year']}-{r['Month']}-{r['Day']} {r['Time']}", "%Y-%m-%d %H:%M")
        for r in rows
    ).replace(tzinfo=UTC)

    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    metrics.observe_batch(_classified(tabformer_csv))

    def transactions(outcome: str) -> float:
        return sum(
            registry.get_sample_value(
                "cardmon_transactions_total", {"channel": c, "outcome": outcome}
            ) or 0
            for c in CHANNELS
        )

    assert sum(transactions(o) for o in OUTCOMES) == len(rows)
    assert sum(transactions(o) for o in OUTCOMES if o != "approved") == len(failed)
    assert transactions("technical") == len(technical)
    assert sum(
        registry.get_sample_value("cardmon_vip_failures_total", {"tier": "gold", "outcome": o})
        or 0
        for o in OUTCOMES
    ) == len(vip_failed)

    samples = _samples(registry)
    per_terminal = [v for (n, _), v in samples.items()
                    if n == "cardmon_terminal_transactions_total"]
    assert sum(per_terminal) == len(rows)
    failures = [v for (n, _), v in samples.items() if n == "cardmon_terminal_failures_total"]
    # Per terminal only the terminal's own classes: technical (96) and card (14, 54, N7).
    card_reasons = ("Bad Expiration", "Bad Card Number", "Bad CVV", "Bad Zipcode")
    terminal_side = [r for r in failed if "Technical Glitch" in r["Errors?"]
                     or any(reason in r["Errors?"] for reason in card_reasons)]
    assert len(terminal_side) == 62
    assert sum(failures) == len(terminal_side)
    last = [v for (n, _), v in samples.items()
            if n == "cardmon_terminal_last_transaction_timestamp_seconds"]
    assert max(last) == latest.timestamp()
    assert len(last) == len(per_terminal)
    # No TabFormer row has a latency: nothing is observed.
    assert all(
        registry.get_sample_value("cardmon_authorization_latency_seconds_count", {"channel": c})
        == 0
        for c in CHANNELS
    )


def test_batching_does_not_change_the_result(tabformer_csv: Path) -> None:
    """The file fed as 20 micro-batches yields exactly the samples of one whole batch."""
    frame = _classified(tabformer_csv)
    whole, batched = CollectorRegistry(), CollectorRegistry()
    PipelineMetrics(whole).observe_batch(frame)
    metrics = PipelineMetrics(batched)
    size = -(-frame.height // 20)
    for offset in range(0, frame.height, size):
        metrics.observe_batch(frame.slice(offset, size))
    assert _samples(batched) == _samples(whole)
