"""PipelineMetrics: exact sample values after hand-built polars batches."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import polars as pl
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import monitor
import monitor.metrics
from monitor.domain import CHANNELS, OUTCOMES
from monitor.metrics import (
    FAILURE_OUTCOMES,
    LATENCY_BUCKETS_SECONDS,
    LatencyHistogramCollector,
    PipelineMetrics,
)

T0 = datetime(2024, 3, 1, 10, 0, 0, tzinfo=UTC)
LE = [*(str(b) for b in LATENCY_BUCKETS_SECONDS), "+Inf"]

SCHEMA: dict[str, Any] = {
    "event_id": pl.String,
    "occurred_at": pl.Datetime("us", "UTC"),
    "channel": pl.String,
    "terminal_id": pl.String,
    "merchant_id": pl.String,
    "txn_type": pl.String,
    "amount_minor": pl.Int64,
    "currency": pl.String,
    "status": pl.String,
    "response_code": pl.String,
    "latency_ms": pl.Float64,
    "entry_mode": pl.String,
    "outcome": pl.String,
    "tier": pl.String,
    # Present in real frames; must never reach a label.
    "card_ref": pl.String,
    "customer_id": pl.String,
    "pan_masked": pl.String,
}


def events(*rows: tuple[str, str, str, str | None, float | None, datetime]) -> pl.DataFrame:
    """Build a classified-event frame from (terminal, channel, outcome, tier, latency_ms, at)."""
    records = []
    for n, (terminal_id, channel, outcome, tier, latency_ms, at) in enumerate(rows):
        timed_out = latency_ms is None
        records.append({
            "event_id": f"evt-{terminal_id}-{n}",
            "occurred_at": at,
            "channel": channel,
            "terminal_id": terminal_id,
            "merchant_id": f"MERCH{n:010d}" if channel != "ATM" else None,
            "txn_type": "withdrawal" if channel == "ATM" else "purchase",
            "amount_minor": 12_345 + n,
            "currency": "EUR",
            "status": "timeout" if timed_out else "completed",
            "response_code": None if timed_out else ("00" if outcome == "approved" else "05"),
            "latency_ms": latency_ms,
            "entry_mode": "chip",
            "outcome": outcome,
            "tier": tier,
            "card_ref": f"card-tok-{n:04d}",
            "customer_id": f"CUST{n:06d}",
            "pan_masked": "453201******0366",
        })
    return pl.DataFrame(records, schema=SCHEMA)


BATCH_1 = events(
    ("T-ATM-01", "ATM", "approved", None, 40.0, T0),
    ("T-ATM-01", "ATM", "technical", "gold", 1200.0, T0 + timedelta(seconds=5)),
    ("T-ATM-01", "ATM", "customer", None, None, T0 + timedelta(seconds=3)),
    ("T-POS-01", "POS", "approved", "platinum", 100.0, T0 + timedelta(minutes=1)),
    ("T-POS-01", "POS", "card", "platinum", 250.0, T0 + timedelta(seconds=30)),
    ("T-POS-02", "POS", "fraud", None, 30_000.0, T0 + timedelta(minutes=2)),
    ("T-POS-02", "POS", "approved", "gold", 750.0, T0 + timedelta(minutes=2, seconds=10.5)),
    ("E-GW-01", "ECOM", "approved", None, 31_000.0, T0 + timedelta(minutes=3)),
    ("E-GW-01", "ECOM", "unknown", "gold", None, T0 + timedelta(minutes=3, seconds=30)),
)
BATCH_2 = events(
    # Older than what T-ATM-01 already reported: its last timestamp must not go back.
    ("T-ATM-01", "ATM", "technical", None, 60.0, T0 - timedelta(minutes=1)),
    ("T-POS-01", "POS", "card", None, 80.0, T0 + timedelta(minutes=5)),
    ("T-NEW-01", "ATM", "approved", None, 500.0, T0 + timedelta(minutes=6)),
)


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh registry per test."""
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> PipelineMetrics:
    """PipelineMetrics registered on the test's own registry."""
    return PipelineMetrics(registry, version="9.9.9-test")


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def buckets(registry: CollectorRegistry, channel: str) -> list[float | None]:
    name = "cardmon_authorization_latency_seconds_bucket"
    return [value(registry, name, channel=channel, le=le) for le in LE]


def test_transactions_counted_by_channel_and_outcome(registry, metrics):
    """Every (channel, outcome) pair counts its events; unseen pairs are exposed at zero."""
    metrics.observe_batch(BATCH_1)
    expected = {
        ("ATM", "approved"): 1, ("ATM", "technical"): 1, ("ATM", "customer"): 1,
        ("POS", "approved"): 2, ("POS", "card"): 1, ("POS", "fraud"): 1,
        ("ECOM", "approved"): 1, ("ECOM", "unknown"): 1,
    }
    for channel in CHANNELS:
        for outcome in OUTCOMES:
            got = value(registry, "cardmon_transactions_total", channel=channel, outcome=outcome)
            assert got == expected.get((channel, outcome), 0), (channel, outcome)


def test_vip_failures_count_only_vip_rows_that_failed(registry, metrics):
    """VIP failures are rows with a tier and an outcome other than approved, by tier and outcome."""
    metrics.observe_batch(BATCH_1)
    metrics.observe_batch(BATCH_2)  # no VIP rows: nothing changes
    name = "cardmon_vip_failures_total"
    assert value(registry, name, tier="gold", outcome="technical") == 1
    assert value(registry, name, tier="gold", outcome="unknown") == 1
    assert value(registry, name, tier="platinum", outcome="card") == 1
    assert value(registry, name, tier="gold", outcome="approved") is None
    assert value(registry, name, tier="platinum", outcome="approved") is None
    samples = [s for m in registry.collect() if m.name == "cardmon_vip_failures"
               for s in m.samples if s.name.endswith("_total")]
    assert len(samples) == 3


def test_latency_histogram_buckets_sum_and_count_are_exact(registry, metrics):
    """Latency buckets are cumulative and inclusive (le), nulls are skipped, sum is in seconds."""
    metrics.observe_batch(BATCH_1)
    # ATM: 0.04 s, 1.2 s (and one timeout without latency).
    assert buckets(registry, "ATM") == [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2]
    # POS: 0.1, 0.25, 0.75 and 30 s sit exactly on bucket bounds.
    assert buckets(registry, "POS") == [0, 1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 4, 4]
    # ECOM: 31 s is only in +Inf.
    assert buckets(registry, "ECOM") == [0] * 12 + [1]
    count = "cardmon_authorization_latency_seconds_count"
    total = "cardmon_authorization_latency_seconds_sum"
    assert value(registry, count, channel="ATM") == 2
    assert value(registry, count, channel="POS") == 4
    assert value(registry, count, channel="ECOM") == 1
    assert value(registry, total, channel="ATM") == pytest.approx(1.24)
    assert value(registry, total, channel="POS") == pytest.approx(31.1)
    assert value(registry, total, channel="ECOM") == pytest.approx(31.0)


def test_latency_histogram_accumulates_across_batches(registry, metrics):
    """A second batch adds to the buckets, count and sum of the first."""
    metrics.observe_batch(BATCH_1)
    metrics.observe_batch(BATCH_2)
    # ATM: 0.04, 1.2, 0.06, 0.5 s.
    assert buckets(registry, "ATM") == [1, 2, 2, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4]
    assert buckets(registry, "POS") == [0, 2, 3, 3, 4, 4, 4, 4, 4, 4, 4, 5, 5]
    assert value(registry, "cardmon_authorization_latency_seconds_sum", channel="ATM") == (
        pytest.approx(1.8)
    )
    assert value(registry, "cardmon_authorization_latency_seconds_sum", channel="POS") == (
        pytest.approx(31.18)
    )


def test_nan_latency_is_not_observed(registry, metrics):
    """A NaN latency is skipped like a missing one, so the sum stays a number."""
    batch = events(
        ("T-POS-09", "POS", "approved", None, float("nan"), T0),
        ("T-POS-09", "POS", "approved", None, 200.0, T0),
    )
    metrics.observe_batch(batch)
    assert value(registry, "cardmon_authorization_latency_seconds_count", channel="POS") == 1
    assert value(registry, "cardmon_authorization_latency_seconds_sum", channel="POS") == 0.2
    assert value(registry, "cardmon_terminal_transactions_total", terminal_id="T-POS-09") == 2


def test_channels_are_exposed_before_any_latency(registry, metrics):
    """Each contract channel has a zero latency histogram before its first observation."""
    for channel in CHANNELS:
        assert buckets(registry, channel) == [0] * 13
        assert value(registry, "cardmon_authorization_latency_seconds_count", channel=channel) == 0


def test_per_terminal_series_after_two_batches(registry, metrics):
    """Terminal counters accumulate and the last timestamp is the latest occurred_at seen."""
    metrics.observe_batch(BATCH_1)
    metrics.observe_batch(BATCH_2)
    last = "cardmon_terminal_last_transaction_timestamp_seconds"
    txns = "cardmon_terminal_transactions_total"
    fails = "cardmon_terminal_failures_total"
    expected_last = {
        "T-ATM-01": T0 + timedelta(seconds=5),
        "T-POS-01": T0 + timedelta(minutes=5),
        "T-POS-02": T0 + timedelta(minutes=2, seconds=10.5),
        "E-GW-01": T0 + timedelta(minutes=3, seconds=30),
        "T-NEW-01": T0 + timedelta(minutes=6),
    }
    for terminal_id, at in expected_last.items():
        assert value(registry, last, terminal_id=terminal_id) == at.timestamp(), terminal_id
    expected_txns = {"T-ATM-01": 4, "T-POS-01": 3, "T-POS-02": 2, "E-GW-01": 2, "T-NEW-01": 1}
    for terminal_id, count in expected_txns.items():
        assert value(registry, txns, terminal_id=terminal_id) == count, terminal_id
    # Only the terminal's own failure classes have per-terminal series: T-ATM-01's
    # customer decline, T-POS-02's fraud decline and E-GW-01's unknown code have none.
    expected_fails = {("T-ATM-01", "technical"): 2, ("T-POS-01", "card"): 2}
    for terminal_id in expected_txns:
        for outcome in FAILURE_OUTCOMES:
            got = value(registry, fails, terminal_id=terminal_id, outcome=outcome)
            assert got == expected_fails.get((terminal_id, outcome)), (terminal_id, outcome)
    assert value(registry, fails, terminal_id="T-ATM-01", outcome="approved") is None
    assert metrics.terminals.terminal_count == 5


def test_no_label_holds_customer_or_card_data(registry, metrics):
    """Label names are the agreed bounded set and no label value is a customer, card or merchant."""
    metrics.observe_batch(BATCH_1)
    metrics.observe_batch(BATCH_2)
    metrics.observe_rejections({"invalid_json": 1})
    metrics.alert_delivery("email", "sent", 0.2)
    metrics.set_lag("card.transactions", 0, 3)
    metrics.observe_sanitised({("merchant_name", "text"): 2, ("city", "pan"): 1})
    names: set[str] = set()
    values: set[str] = set()
    for family in registry.collect():
        for sample in family.samples:
            names.update(sample.labels)
            values.update(sample.labels.values())
    assert names == {
        "channel", "outcome", "tier", "status", "reason", "topic", "partition", "version",
        "terminal_id", "le", "field", "change",
    }
    frame = pl.concat([BATCH_1, BATCH_2])
    sensitive = set()
    for column in ("card_ref", "customer_id", "pan_masked", "merchant_id", "event_id",
                   "response_code"):
        sensitive.update(frame[column].drop_nulls().to_list())
    assert values.isdisjoint(sensitive)
    assert {"T-ATM-01", "T-NEW-01"} <= values


def test_sanitised_fields_are_counted_by_contract_field_and_change(registry, metrics):
    """cardmon_event_fields_sanitised_total counts cleaned fields by name and change, starting at zero."""
    assert registry.get_sample_value(
        "cardmon_event_fields_sanitised_total", {"field": "merchant_name", "change": "pan"}) == 0
    metrics.observe_sanitised({("merchant_name", "text"): 2, ("city", "pan"): 1})
    metrics.observe_sanitised({("merchant_name", "text"): 1})
    assert registry.get_sample_value(
        "cardmon_event_fields_sanitised_total", {"field": "merchant_name", "change": "text"}) == 3
    assert registry.get_sample_value(
        "cardmon_event_fields_sanitised_total", {"field": "city", "change": "pan"}) == 1
    with pytest.raises(ValueError):
        metrics.observe_sanitised({("card_ref", "text"): 1})


def test_empty_batch_changes_nothing(registry, metrics):
    """An empty frame leaves every sample as it was."""
    metrics.observe_batch(BATCH_1)
    before = generate_latest(registry)
    metrics.observe_batch(BATCH_1.clear())
    assert generate_latest(registry) == before


def test_pipeline_counters_and_gauges(registry, metrics):
    """Rejections, dead letters, batches, lag, outbox, registry reload and build info read back."""
    metrics.observe_rejections({"invalid_json": 2, "raw_pan": 1, "missing_field": 0})
    metrics.observe_rejections({"invalid_json": 1})
    metrics.observe_dead_letters({"invalid_json": 3})
    assert value(registry, "cardmon_events_rejected_total", reason="invalid_json") == 3
    assert value(registry, "cardmon_events_rejected_total", reason="raw_pan") == 1
    assert value(registry, "cardmon_events_rejected_total", reason="missing_field") == 0
    assert value(registry, "cardmon_dead_letters_total", reason="invalid_json") == 3
    assert value(registry, "cardmon_dead_letters_total", reason="raw_pan") is None

    before = time.time()
    metrics.observe_batch_duration(0.02, 500)
    metrics.observe_batch_duration(0.3, 8)
    after = time.time()
    assert value(registry, "cardmon_events_consumed_total") == 508
    assert value(registry, "cardmon_batch_duration_seconds_count") == 2
    assert value(registry, "cardmon_batch_duration_seconds_sum") == pytest.approx(0.32)
    assert value(registry, "cardmon_batch_duration_seconds_bucket", le="0.025") == 1
    assert value(registry, "cardmon_batch_duration_seconds_bucket", le="0.5") == 2
    assert value(registry, "cardmon_batch_size_messages_bucket", le="16.0") == 1
    assert value(registry, "cardmon_batch_size_messages_bucket", le="1024.0") == 2
    assert value(registry, "cardmon_batch_size_messages_sum") == 508
    assert before <= value(registry, "cardmon_last_batch_timestamp_seconds") <= after
    with pytest.raises(ValueError):
        metrics.observe_batch_duration(-1.0, 3)

    metrics.set_lag("card.transactions", 0, 42)
    metrics.set_lag("card.transactions", 1, 7)
    metrics.forget_lag("card.transactions", 1)
    metrics.forget_lag("card.transactions", 9)  # never set: no error
    lag = "cardmon_consumer_lag_messages"
    assert value(registry, lag, topic="card.transactions", partition="0") == 42
    assert value(registry, lag, topic="card.transactions", partition="1") is None

    metrics.set_alerts_pending(4)
    assert value(registry, "cardmon_alerts_pending") == 4

    loaded_at = datetime(2024, 3, 1, 6, 0, tzinfo=timezone(timedelta(hours=1)))
    metrics.observe_registry_reload(1_250, loaded_at)
    assert value(registry, "cardmon_registry_customers") == 1_250
    assert value(registry, "cardmon_registry_last_reload_timestamp_seconds") == (
        datetime(2024, 3, 1, 5, 0, tzinfo=UTC).timestamp()
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        metrics.observe_registry_reload(1, datetime(2024, 3, 1, 6, 0))

    assert value(registry, "cardmon_build_info", version="9.9.9-test") == 1


def test_build_info_defaults_to_package_version(registry):
    """Without an explicit version, build info carries the installed cardmon version."""
    PipelineMetrics(registry)
    assert value(registry, "cardmon_build_info", version=monitor.__version__) == 1


def test_alert_delivery_counts_and_times_attempts(registry, metrics):
    """Each delivery attempt counts by channel and status and times by channel."""
    metrics.alert_delivery("email", "sent", 0.4)
    metrics.alert_delivery("email", "failed", 12.0)
    metrics.alert_delivery("webhook", "sent", 0.08)
    assert value(registry, "cardmon_alerts_total", channel="email", status="sent") == 1
    assert value(registry, "cardmon_alerts_total", channel="email", status="failed") == 1
    assert value(registry, "cardmon_alerts_total", channel="webhook", status="sent") == 1
    duration = "cardmon_alert_delivery_duration_seconds"
    assert value(registry, f"{duration}_count", channel="email") == 2
    assert value(registry, f"{duration}_sum", channel="email") == pytest.approx(12.4)
    assert value(registry, f"{duration}_bucket", channel="email", le="0.5") == 1
    assert value(registry, f"{duration}_bucket", channel="email", le="30.0") == 2
    assert value(registry, f"{duration}_bucket", channel="webhook", le="0.1") == 1


def test_registering_twice_on_one_registry_fails(registry, metrics):
    """A second PipelineMetrics on the same registry is refused (duplicate series)."""
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PipelineMetrics(registry)


@pytest.mark.parametrize("bounds", [(), (1.0, 0.5), (0.1, 0.1), (0.1, float("inf"))])
def test_invalid_latency_buckets_are_refused(bounds):
    """Latency buckets must be non-empty, strictly increasing and finite."""
    with pytest.raises(ValueError):
        LatencyHistogramCollector(bounds)


def test_exposition_passes_promtool(registry, metrics):
    """`promtool check metrics` finds no problem in the full exposition."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CARDMON_REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool not found and CARDMON_REQUIRE_PROMTOOL=1")
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    metrics.observe_batch(BATCH_1)
    metrics.observe_batch(BATCH_2)
    metrics.observe_rejections({"invalid_json": 1})
    metrics.observe_dead_letters({"invalid_json": 1})
    metrics.observe_batch_duration(0.05, 12)
    metrics.alert_delivery("email", "sent", 0.3)
    metrics.set_lag("card.transactions", 0, 5)
    metrics.set_alerts_pending(1)
    metrics.observe_registry_reload(10, T0)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=generate_latest(registry),
        capture_output=True, timeout=60, check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_scrape_during_ingestion_sees_whole_batches(registry, metrics):
    """A scrape running on another thread never sees a partly applied batch."""
    batch_rows = 2_000
    batch = pl.DataFrame({
        "occurred_at": pl.datetime_range(
            T0, T0 + timedelta(seconds=batch_rows - 1), "1s", time_zone="UTC", eager=True,
        ).dt.cast_time_unit("us"),
        "terminal_id": [f"T{n % 300:05d}" for n in range(batch_rows)],
        "channel": ["POS"] * batch_rows,
        "outcome": ["approved", "card"] * (batch_rows // 2),
        "tier": [None] * batch_rows,
        "latency_ms": [120.0] * batch_rows,
    }, schema_overrides={"tier": pl.String})
    totals: list[float] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            text = generate_latest(registry).decode()
            for family in text_string_to_metric_families(text):
                if family.name == "cardmon_terminal_transactions":
                    totals.append(sum(s.value for s in family.samples
                                      if s.name.endswith("_total")))

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for _ in range(20):
            metrics.observe_batch(batch)
    finally:
        done.set()
        scraper.join()
    assert totals, "the scraper never ran"
    assert all(total % batch_rows == 0 for total in totals), totals
    assert value(registry, "cardmon_terminal_transactions_total", terminal_id="T00000") == 20 * 7


def test_large_batch_totals(registry, metrics):
    """100k events over 10k terminals give exact totals per terminal, outcome and VIP tier."""
    rows, terminals = 100_000, 10_000
    frame = (
        pl.DataFrame({"i": pl.int_range(0, rows, eager=True)})
        .with_columns(
            occurred_at=pl.lit(T0).dt.cast_time_unit("us") + pl.duration(seconds=pl.col("i")),
            terminal_id=pl.format("T{}", (pl.col("i") % terminals).cast(pl.String).str.zfill(5)),
            channel=(pl.col("i") % 3).replace_strict(dict(enumerate(CHANNELS)), return_dtype=pl.String),
            outcome=(pl.col("i") % 7).replace_strict(dict(enumerate(OUTCOMES)), return_dtype=pl.String),
            tier=pl.when(pl.col("i") % 5 == 0).then(pl.lit("gold")),
            latency_ms=pl.when(pl.col("i") % 10 != 0).then((pl.col("i") % 2_000).cast(pl.Float64)),
        )
    )
    metrics.observe_batch(frame)

    # Reference counts with plain integer arithmetic.
    vip_failed = sum(1 for i in range(rows) if i % 5 == 0 and i % 7 != 0)
    timed = sum(1 for i in range(rows) if i % 10 != 0)
    under_quarter_second = sum(1 for i in range(rows) if i % 10 != 0 and i % 2_000 <= 250)

    families = {f.name: f for f in registry.collect()}
    terminal_txns = [s for s in families["cardmon_terminal_transactions"].samples
                     if s.name.endswith("_total")]
    assert len(terminal_txns) == terminals
    assert {s.value for s in terminal_txns} == {rows / terminals}
    terminal_fails = [s for s in families["cardmon_terminal_failures"].samples
                      if s.name.endswith("_total")]
    terminal_side = {OUTCOMES.index(o) for o in ("technical", "terminal", "card")}
    assert sum(s.value for s in terminal_fails) == sum(1 for i in range(rows) if i % 7 in terminal_side)
    assert {s.labels["outcome"] for s in terminal_fails} == {"technical", "terminal", "card"}
    last = families["cardmon_terminal_last_transaction_timestamp_seconds"].samples
    assert len(last) == terminals
    assert value(registry, "cardmon_terminal_last_transaction_timestamp_seconds",
                 terminal_id="T09999") == (T0 + timedelta(seconds=rows - 1)).timestamp()
    assert sum(
        value(registry, "cardmon_transactions_total", channel=c, outcome=o)
        for c in CHANNELS for o in OUTCOMES
    ) == rows
    assert sum(
        value(registry, "cardmon_vip_failures_total", tier="gold", outcome=o) or 0
        for o in OUTCOMES
    ) == vip_failed
    assert sum(
        value(registry, "cardmon_authorization_latency_seconds_count", channel=c)
        for c in CHANNELS
    ) == timed
    assert sum(
        value(registry, "cardmon_authorization_latency_seconds_bucket", channel=c, le="0.25")
        for c in CHANNELS
    ) == under_quarter_second


def test_public_names_match_all():
    """`monitor.metrics.__all__` lists exactly the package's public names."""
    public = {n for n in vars(monitor.metrics) if not n.startswith("_")}
    assert sorted(monitor.metrics.__all__) == sorted(public)
