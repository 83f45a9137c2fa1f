"""Per-terminal sliding windows: exact counts at the edges, late events, pruning, signals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from monitor.health.windows import TerminalWindows, WindowRules, WindowSpec
from tests.health.conftest import Batch, at

RULES_FILE = Path(__file__).resolve().parents[2] / "rules" / "health.yaml"


def _row(windows: TerminalWindows, end: float, terminal_id: str = "T1") -> dict[str, object]:
    stats = windows.stats(at(end)).filter(pl.col("terminal_id") == terminal_id)
    assert stats.height == 1
    return stats.row(0, named=True)


def test_counts_and_ratios_follow_the_5m_boundary(batch: Batch) -> None:
    """An event counts in the 5 m window until its 1-minute bucket is five buckets old, then only in 1 h."""
    windows = TerminalWindows()
    windows.observe(batch([
        {"terminal_id": "T1", "at": 30, "outcome": "approved"},
        {"terminal_id": "T1", "at": 90, "outcome": "technical"},
        {"terminal_id": "T1", "at": 299, "outcome": "terminal"},
        {"terminal_id": "T1", "at": 299, "outcome": "customer"},
    ]), now=at(400))
    row = _row(windows, 299)
    assert (row["5m_transactions"], row["5m_technical"], row["5m_terminal"], row["5m_customer"]) == (4, 1, 1, 1)
    assert row["5m_failures"] == 3
    assert row["5m_technical_ratio"] == pytest.approx(2 / 4)
    assert row["5m_failure_ratio"] == pytest.approx(3 / 4)
    row = _row(windows, 300)  # the 08:00 bucket left the 5 m window
    assert (row["5m_transactions"], row["5m_technical_ratio"]) == (3, pytest.approx(2 / 3))
    row = _row(windows, 360)  # the 08:01 bucket too
    assert (row["5m_transactions"], row["5m_technical"], row["5m_technical_ratio"]) == (2, 0, pytest.approx(1 / 2))
    assert (row["1h_transactions"], row["1h_failures"]) == (4, 3)
    row = _row(windows, 600)  # nothing in 5 m: no ratio rather than 0
    assert (row["5m_transactions"], row["5m_technical_ratio"], row["1h_transactions"]) == (0, None, 4)
    row = _row(windows, 3600)  # the 5-minute bucket of 08:00 left the 1 h window
    assert row["1h_transactions"] == 0


def test_late_events_count_in_their_own_bucket_and_very_late_ones_are_dropped(batch: Batch) -> None:
    """Out-of-order events land in the bucket of their event time; events older than 1 h are dropped and counted."""
    windows = TerminalWindows()
    windows.observe(batch([{"terminal_id": "T1", "at": 7200, "outcome": "approved"}]), now=at(7300))
    windows.observe(batch([
        {"terminal_id": "T1", "at": 7100, "outcome": "technical"},  # 100 s late: both windows
        {"terminal_id": "T1", "at": 5000, "outcome": "card"},  # 37 min late: 1 h only
        {"terminal_id": "T1", "at": 100, "outcome": "fraud"},  # 2 h late: dropped
    ]), now=at(7300))
    row = _row(windows, 7200)
    assert (row["5m_transactions"], row["5m_technical"], row["5m_card"]) == (2, 1, 0)
    assert (row["1h_transactions"], row["1h_technical"], row["1h_card"], row["1h_fraud"]) == (3, 1, 1, 0)
    assert windows.late_dropped == 1
    assert windows.watermark == at(7200)


def test_event_times_past_the_wall_clock_are_capped(batch: Batch) -> None:
    """A terminal whose clock runs an hour fast cannot move the watermark past the wall clock."""
    windows = TerminalWindows()
    windows.observe(batch([{"terminal_id": "T1", "at": 4000}]), now=at(400))
    assert windows.watermark == at(400)
    assert _row(windows, 400)["5m_transactions"] == 1


def test_old_buckets_are_pruned_as_the_watermark_moves(batch: Batch) -> None:
    """Each window keeps only the buckets a window ending at the watermark can still reach."""
    windows = TerminalWindows()
    windows.observe(batch([{"terminal_id": f"T{i}", "at": 60 * m} for i in range(3) for m in range(30)]),
                    now=at(1800))
    assert windows.bucket_rows() == {"5m": 3 * 5, "1h": 3 * 6}
    windows.observe(batch([{"terminal_id": "T0", "at": 9000}]), now=at(9000))
    assert windows.bucket_rows() == {"5m": 1, "1h": 1}
    assert len(windows) == 3  # terminals stay known; their windows are empty
    assert _row(windows, 9000, "T1")["1h_transactions"] == 0


def test_consecutive_technical_failures_run_to_the_end_of_the_stream(batch: Batch) -> None:
    """Technical and terminal failures in a row add up across batches, in the order read (the terminal's partition order); any other outcome resets."""
    windows = TerminalWindows()
    windows.observe(batch([
        {"terminal_id": "T1", "at": 10, "outcome": "technical"},
        {"terminal_id": "T1", "at": 20, "outcome": "approved"},
        {"terminal_id": "T1", "at": 40, "outcome": "terminal"},
        {"terminal_id": "T1", "at": 30, "outcome": "technical"},  # out of order inside the batch
        {"terminal_id": "T2", "at": 30, "outcome": "technical"},
        {"terminal_id": "T2", "at": 35, "outcome": "customer"},
    ]), now=at(100))
    runs = dict(windows.terminals.select("terminal_id", "run").iter_rows())
    assert runs == {"T1": 2, "T2": 0}
    windows.observe(batch([{"terminal_id": "T1", "at": 50, "outcome": "technical"},
                           {"terminal_id": "T1", "at": 60, "outcome": "technical"}]), now=at(100))
    assert _row(windows, 100)["consecutive_technical"] == 4
    windows.observe(batch([{"terminal_id": "T1", "at": 45, "outcome": "technical"}]), now=at(100))
    assert _row(windows, 100)["consecutive_technical"] == 5  # read last: the end of its stream
    windows.observe(batch([{"terminal_id": "T1", "at": 70, "outcome": "card"}]), now=at(100))
    assert _row(windows, 100)["consecutive_technical"] == 0


def test_the_run_of_technical_failures_does_not_depend_on_the_batch_split(batch: Batch) -> None:
    """A terminal's events in one batch or two, one of them earlier in time than the one read before it: the same run."""
    rows = [{"terminal_id": "T1", "at": 10, "outcome": "approved"},
            {"terminal_id": "T1", "at": 30, "outcome": "technical"},
            {"terminal_id": "T1", "at": 28, "outcome": "approved"}]  # read last: the end of its stream
    whole, split = TerminalWindows(), TerminalWindows()
    whole.observe(batch(rows), now=at(100))
    split.observe(batch(rows[:2]), now=at(100))
    split.observe(batch(rows[2:]), now=at(100))
    assert whole.terminals.equals(split.terminals)
    assert _row(whole, 100)["consecutive_technical"] == 0


def test_latency_percentiles_are_interpolated_from_bucket_counts(batch: Batch) -> None:
    """p50/p95/p99 come from bucket counts (interpolated like histogram_quantile); the +Inf bucket reads as 30 s."""
    windows = TerminalWindows()
    rows = [{"terminal_id": "T1", "at": 10, "latency_ms": 200.0} for _ in range(98)]
    rows += [{"terminal_id": "T1", "at": 10, "latency_ms": 7000.0},
             {"terminal_id": "T1", "at": 10, "latency_ms": None},
             {"terminal_id": "T2", "at": 10, "latency_ms": 45_000.0}]
    windows.observe(batch(rows), now=at(60))
    row = _row(windows, 60)
    # 98 in (0.1, 0.25], 1 in (5, 10]; 99 latencies, the null one is not counted.
    assert row["5m_latency_p50_seconds"] == pytest.approx(0.1 + 0.15 * 49.5 / 98)
    assert row["5m_latency_p95_seconds"] == pytest.approx(0.1 + 0.15 * 94.05 / 98)
    assert row["5m_latency_p99_seconds"] == pytest.approx(5.0 + 5.0 * (98.01 - 98))
    assert _row(windows, 60, "T2")["5m_latency_p99_seconds"] == pytest.approx(30.0)


def test_only_fallback_reads_count_as_fallbacks(batch: Batch) -> None:
    """A fallback (entry mode 80) is a failed chip read; an ordinary swipe of a stripe card is not one."""
    windows = TerminalWindows()
    windows.observe(batch(
        [{"terminal_id": "CHIP", "at": 10, "entry_mode": "chip"} for _ in range(7)]
        + [{"terminal_id": "CHIP", "at": 10, "entry_mode": "chip", "outcome": "card"}]
        + [{"terminal_id": "CHIP", "at": 10, "entry_mode": "fallback"} for _ in range(2)]
        + [{"terminal_id": "CHIP", "at": 10, "entry_mode": "swipe"} for _ in range(4)]
        + [{"terminal_id": "CHIP", "at": 10, "entry_mode": None}]
        + [{"terminal_id": "MAG", "at": 10, "entry_mode": "swipe"} for _ in range(5)]
    ), now=at(60))
    chip = _row(windows, 60, "CHIP")
    assert (chip["5m_chip_reads"], chip["5m_swipe_fallbacks"]) == (8, 2)
    assert chip["5m_swipe_fallback_ratio"] == pytest.approx(2 / 10)
    assert chip["5m_chip_card_failure_ratio"] == pytest.approx(1 / 8)
    mag = _row(windows, 60, "MAG")
    assert (mag["chip_seen"], mag["5m_swipe_fallbacks"], mag["5m_swipe_fallback_ratio"]) == (False, 0, None)


def test_attributes_keep_the_latest_reported_value(batch: Batch) -> None:
    """Region, branch, merchant and channel are the latest non-null values a terminal reported."""
    windows = TerminalWindows()
    windows.observe(batch([{"terminal_id": "T1", "at": 10, "region": "north", "merchant_id": "M1"}]), now=at(60))
    windows.observe(batch([{"terminal_id": "T1", "at": 20, "region": "south"}]), now=at(60))
    row = _row(windows, 60)
    assert (row["region"], row["merchant_id"], row["channel"]) == ("south", "M1", "POS")


def test_windows_are_configurable_in_rules_file(tmp_path: Path) -> None:
    """The rules file sets the windows; a length that is not a multiple of its bucket is refused."""
    assert WindowRules.load(RULES_FILE) == WindowRules()
    custom = tmp_path / "health.yaml"
    custom.write_text("windows:\n  spans:\n    - {name: 15m, length_seconds: 900, bucket_seconds: 300}\n")
    rules = WindowRules.load(custom)
    assert [s.name for s in rules.spans] == ["15m"]
    assert "15m_transactions" in TerminalWindows(rules).stats().columns
    with pytest.raises(ValueError, match="multiple"):
        WindowSpec(name="7m", length_seconds=420, bucket_seconds=60 * 5)


def test_memory_per_terminal_for_an_hour_of_traffic(batch: Batch) -> None:
    """With traffic in every minute of the hour, the windows hold 17 bucket rows and well under 2 KiB per terminal."""
    terminals = 2_000
    windows = TerminalWindows()
    ids = pl.Series([f"T{i:06d}" for i in range(terminals)])
    template = batch([{"terminal_id": "x", "at": 0}])
    for minute in range(60):
        frame = pl.DataFrame({"terminal_id": ids}).join(template.drop("terminal_id"), how="cross").with_columns(
            pl.col("occurred_at") + pl.duration(minutes=minute))
        windows.observe(frame, now=at(minute * 60 + 1))
    rows = windows.bucket_rows()
    assert rows == {"5m": terminals * 5, "1h": terminals * 12}
    per_terminal = windows.estimated_size() / terminals
    assert per_terminal < 2048, f"{per_terminal:.0f} bytes per terminal"


def _burst(count: int, when: datetime, terminal_id: str = "E1") -> pl.DataFrame:
    """``count`` technical failures at one terminal and instant (a busy e-commerce gateway)."""
    return pl.DataFrame({"terminal_id": [terminal_id] * count, "occurred_at": [when] * count,
                         "outcome": ["technical"] * count, "latency_ms": [100.0] * count,
                         "entry_mode": ["online"] * count},
                        schema_overrides={"occurred_at": pl.Datetime("us", "UTC")})


def test_counts_past_65535_in_one_bucket_stay_exact() -> None:
    """Compact counters never under-count: 70,000 events in one minute, and 5 × 20,000, read back exactly."""
    t0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    now = t0 + timedelta(days=1)
    windows = TerminalWindows()
    windows.observe(_burst(70_000, t0), now=now)
    windows.observe(_burst(3, t0, terminal_id="P1"), now=now)
    stats = {row["terminal_id"]: row for row in windows.stats().iter_rows(named=True)}
    assert (stats["E1"]["5m_transactions"], stats["E1"]["5m_technical"]) == (70_000, 70_000)
    assert stats["E1"]["1h_transactions"] == 70_000 and stats["P1"]["5m_transactions"] == 3
    summed = TerminalWindows()
    for minute in range(5):
        summed.observe(_burst(20_000, t0 + timedelta(minutes=minute)), now=now)
    [row] = summed.stats().iter_rows(named=True)
    assert (row["5m_transactions"], row["1h_transactions"]) == (100_000, 100_000)
