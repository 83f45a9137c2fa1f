"""Silent terminals: the hour-of-week baseline, the rules, and the schedule they respect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from monitor.health.baseline import Baseline, learn_baseline
from monitor.health.silent import SilentDetector, SilentRules
from monitor.health.terminals import TerminalRegistryLoader
from monitor.paths import rules_path
from monitor.pipeline.watermark import EventClock

PARIS = ZoneInfo("Europe/Paris")
HEADER = "terminal_id,channel,timezone,opening_hours,status"
RULES = SilentRules(silent_after_seconds=900, min_expected_in_gap=3, drop_ratio=0.2,
                    min_expected_per_hour=6, baseline_alpha=0.125)
# Monday 2 March 2026 is a Monday; Paris is UTC+1 until 29 March.
MONDAY = datetime(2026, 3, 2, tzinfo=PARIS)


def paris(day: int, hour: int, minute: int = 0) -> datetime:
    """An aware instant in Paris in the week of Monday 2 March 2026 (day 0 = Monday)."""
    return MONDAY + timedelta(days=day, hours=hour, minutes=minute)


def traffic(terminal_id: str, start: datetime, end: datetime, per_hour: float) -> pl.DataFrame:
    """A batch frame with evenly spaced transactions of one terminal in [start, end)."""
    step = timedelta(seconds=3600 / per_hour)
    times = []
    at = start
    while at < end:
        times.append(at.astimezone(UTC))
        at += step
    return pl.DataFrame({"terminal_id": [terminal_id] * len(times), "occurred_at": times},
                        schema={"terminal_id": pl.String, "occurred_at": pl.Datetime("us", "UTC")})


def shop_history(terminal_id: str, weeks: int, per_hour: float) -> pl.DataFrame:
    """``weeks`` weeks before MONDAY of Mo-Sa 10:00-20:00 Paris traffic at ``per_hour``."""
    frames = []
    for week in range(weeks, 0, -1):
        for day in range(6):
            opening = paris(day - 7 * week, 10)
            frames.append(traffic(terminal_id, opening, opening + timedelta(hours=10), per_hour))
    return pl.concat(frames)


@pytest.fixture
def registry(tmp_path: Path) -> TerminalRegistryLoader:
    """A registry with a mall POS (Mo-Sa 10-20 Paris), a 24/7 ATM and a decommissioned POS."""
    path = tmp_path / "terminals.csv"
    rows = ["POS00001,POS,Europe/Paris,Mo-Sa 10:00-20:00,active",
            "ATM00001,ATM,Europe/Paris,24/7,active",
            "POS00009,POS,Europe/Paris,Mo-Sa 10:00-20:00,decommissioned"]
    path.write_text("\n".join([HEADER, *rows, ""]), encoding="utf-8")
    loader = TerminalRegistryLoader(path)
    loader.load()
    return loader


def how(day: int, hour: int) -> int:
    """Hour of the week (Monday 00:00 = 0)."""
    return day * 24 + hour


def test_baseline_is_the_mean_per_hour_of_week_in_local_time(registry: TerminalRegistryLoader) -> None:
    """Three weeks at 12/h in opening hours give 12/h for those hours and 0 at night or on Sunday."""
    baseline = learn_baseline(shop_history("POS00001", 3, 12), registry.current)
    assert baseline.expected("POS00001", how(0, 10)) == pytest.approx(12)
    assert baseline.expected("POS00001", how(5, 19)) == pytest.approx(12)
    assert baseline.expected("POS00001", how(2, 9)) == 0
    assert baseline.expected("POS00001", how(6, 12)) == 0
    assert baseline.expected("UNKNOWN", how(0, 10)) == 0


def test_weeks_without_traffic_in_an_hour_count_as_zero(registry: TerminalRegistryLoader) -> None:
    """A terminal busy on Mondays 10-11 in one week of three expects a third of it."""
    history = pl.concat([
        shop_history("POS00001", 3, 12).filter(pl.col("occurred_at") >= paris(-21, 11).astimezone(UTC)),
        traffic("POS00001", paris(-21, 10), paris(-21, 11), 12),
    ]).filter(~pl.col("occurred_at").is_between(paris(-14, 10).astimezone(UTC), paris(-14, 11).astimezone(UTC),
                                                closed="left")
              & ~pl.col("occurred_at").is_between(paris(-7, 10).astimezone(UTC), paris(-7, 11).astimezone(UTC),
                                                  closed="left"))
    baseline = learn_baseline(history, registry.current)
    assert baseline.expected("POS00001", how(0, 10)) == pytest.approx(4)
    assert baseline.expected("POS00001", how(0, 11)) == pytest.approx(12)


def test_hourly_counts_learn_the_same_baseline_as_events(registry: TerminalRegistryLoader) -> None:
    """A history of hourly counts (with a count column) gives the baseline its events give."""
    events = shop_history("POS00001", 2, 12)
    hourly = (events.group_by("terminal_id", pl.col("occurred_at").dt.truncate("1h"))
              .agg(pl.len().alias("count")))
    a, b = learn_baseline(events, registry.current), learn_baseline(hourly, registry.current)
    assert a.frame.equals(b.frame)


def test_baseline_round_trips_through_parquet(tmp_path: Path, registry: TerminalRegistryLoader) -> None:
    """A saved baseline reads back identical, so a restart needs no re-learning."""
    baseline = learn_baseline(shop_history("POS00001", 1, 12), registry.current)
    baseline.write(tmp_path / "baseline.parquet")
    assert Baseline.read(tmp_path / "baseline.parquet").frame.equals(baseline.frame)


def detector(registry: TerminalRegistryLoader, started_at: datetime, per_hour: float = 60) -> SilentDetector:
    """A detector whose baseline expects ``per_hour`` in the mall POS's opening hours."""
    baseline = learn_baseline(pl.concat([shop_history("POS00001", 2, per_hour),
                                         shop_history("POS00009", 2, per_hour)]), registry.current)
    return SilentDetector(RULES, baseline, registry=registry, started_at=started_at)


def test_a_terminal_that_stops_while_open_is_silent_within_silent_after(
        registry: TerminalRegistryLoader) -> None:
    """Last transaction 13:59 on a Tuesday: not silent at 14:13, silent at 14:14 (no_traffic)."""
    watch = detector(registry, started_at=paris(1, 9))
    watch.observe(traffic("POS00001", paris(1, 10), paris(1, 14), 60), now=paris(1, 14))
    assert watch.evaluate(paris(1, 14, 13)) == set()
    assert watch.evaluate(paris(1, 14, 14)) == {"POS00001"}
    row = watch.last_result.row(0, named=True)
    assert row["reason"] == "no_traffic" and row["silent_seconds"] >= 900


def test_the_same_terminal_is_not_silent_while_closed(registry: TerminalRegistryLoader) -> None:
    """Traffic stops at 19:59: the shop closes at 20:00, so it is not silent that night or at 3 a.m."""
    watch = detector(registry, started_at=paris(1, 9))
    watch.observe(traffic("POS00001", paris(1, 10), paris(1, 20), 60), now=paris(1, 20))
    assert watch.evaluate(paris(1, 20, 30)) == set()
    assert watch.evaluate(paris(2, 3)) == set()
    # Next morning the silence counts from the opening, not from last night.
    assert watch.evaluate(paris(2, 10, 14)) == set()
    assert watch.evaluate(paris(2, 10, 15)) == {"POS00001"}


def test_a_sunday_is_never_silent_for_a_shop_closed_on_sundays(registry: TerminalRegistryLoader) -> None:
    """No traffic all Sunday long flags nothing: the schedule says closed."""
    watch = detector(registry, started_at=paris(5, 9))
    assert watch.evaluate(paris(6, 15)) == set()


def test_volume_drop_below_ratio_of_baseline_is_silent(registry: TerminalRegistryLoader) -> None:
    """At 5/h instead of the usual 60/h for an hour the terminal is silent (volume_drop)."""
    watch = detector(registry, started_at=paris(1, 9))
    watch.observe(traffic("POS00001", paris(1, 10), paris(1, 12), 60), now=paris(1, 12))
    watch.observe(traffic("POS00001", paris(1, 12), paris(1, 13, 5), 5), now=paris(1, 13, 5))
    assert watch.evaluate(paris(1, 13, 5)) == {"POS00001"}
    row = watch.last_result.row(0, named=True)
    assert row["reason"] == "volume_drop"
    # The completed 12:00 hour (5 transactions) is already folded into its slot.
    twelve = 60 + 0.125 * (5 - 60)
    assert row["observed_last_hour"] == 5
    assert row["expected_per_hour"] == pytest.approx(twelve * 55 / 60 + 60 * 5 / 60, rel=1e-6)


def test_normal_traffic_is_never_silent(registry: TerminalRegistryLoader) -> None:
    """A terminal trading at its usual level all day is never flagged."""
    watch = detector(registry, started_at=paris(1, 9))
    for hour in range(10, 20):
        watch.observe(traffic("POS00001", paris(1, hour), paris(1, hour + 1), 60), now=paris(1, hour + 1))
        assert watch.evaluate(paris(1, hour + 1)) == set()


def test_quiet_terminals_and_decommissioned_ones_are_not_silent(registry: TerminalRegistryLoader) -> None:
    """Below min_expected_per_hour, without a baseline, or decommissioned: never silent."""
    quiet = detector(registry, started_at=paris(1, 9), per_hour=4)
    assert quiet.evaluate(paris(1, 15)) == set()
    busy = detector(registry, started_at=paris(1, 9))
    busy.observe(traffic("ATM00001", paris(1, 9), paris(1, 10), 60), now=paris(1, 10))  # no baseline
    assert busy.evaluate(paris(1, 15)) == {"POS00001"}  # never seen since start; POS00009 excluded


def test_completed_hours_update_the_baseline(registry: TerminalRegistryLoader) -> None:
    """Each completed hour moves its slot by alpha towards the live count; the start hour is skipped."""
    watch = detector(registry, started_at=paris(1, 9, 30))
    watch.observe(traffic("POS00001", paris(1, 10), paris(1, 11), 20), now=paris(1, 11))
    watch.evaluate(paris(1, 11, 1))
    assert watch.baseline.expected("POS00001", how(1, 10)) == pytest.approx(60 + 0.125 * (20 - 60))
    assert watch.baseline.expected("POS00001", how(1, 9)) == 0  # the detector's partial first hour
    assert watch.baseline.expected("POS00009", how(1, 10)) == pytest.approx(60 * 0.875)


def test_an_hour_is_folded_only_once_the_watermark_has_passed_it(registry: TerminalRegistryLoader) -> None:
    """With the pipeline's event clock, a lagging consumer's hour waits for all its events before it moves the baseline."""
    clock = EventClock(allowed_lateness_seconds=0)
    watch = detector(registry, started_at=paris(1, 9, 30))
    watch.clock = clock
    first_half = traffic("POS00001", paris(1, 10), paris(1, 10, 30), 20)
    clock.advance(first_half.get_column("occurred_at"))
    watch.observe(first_half, now=paris(1, 12))
    watch.evaluate(paris(1, 12, 1))  # the wall clock is past 11:00, the events are not
    assert watch.baseline.expected("POS00001", how(1, 10)) == 60
    second_half = traffic("POS00001", paris(1, 10, 30), paris(1, 11, 5), 20)
    clock.advance(second_half.get_column("occurred_at"))
    watch.observe(second_half, now=paris(1, 12))
    watch.evaluate(paris(1, 12, 2))
    assert watch.baseline.expected("POS00001", how(1, 10)) == pytest.approx(60 + 0.125 * (20 - 60))


def test_event_times_in_the_future_do_not_hide_silence(registry: TerminalRegistryLoader) -> None:
    """A terminal with its clock an hour fast is still silent 15 minutes after its last event."""
    watch = detector(registry, started_at=paris(1, 9))
    watch.observe(traffic("POS00001", paris(1, 15), paris(1, 15, 1), 60), now=paris(1, 14))
    assert watch.evaluate(paris(1, 14, 15)) == {"POS00001"}


def test_rules_file_is_read_and_checked(tmp_path: Path) -> None:
    """rules/health.yaml loads; an unknown key or a ratio above 1 is refused."""
    rules = SilentRules.load(rules_path("health.yaml"))
    assert rules.silent_after_seconds == 900 and rules.drop_ratio == 0.2
    bad = tmp_path / "health.yaml"
    bad.write_text("silent:\n  silent_after: 900\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown key"):
        SilentRules.load(bad)
    bad.write_text("silent:\n  drop_ratio: 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="at most 1"):
        SilentRules.load(bad)
    bad.write_text("state: {}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no 'silent' section"):
        SilentRules.load(bad)
