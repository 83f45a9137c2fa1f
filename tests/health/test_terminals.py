"""The terminal registry: opening-hours grammar, DST-safe schedules, reload on change."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from monitor.health.terminals import (
    OpeningHours,
    OpeningHoursError,
    Schedule,
    TerminalRegistryError,
    TerminalRegistryLoader,
    is_open,
    read_terminals,
)

PARIS = ZoneInfo("Europe/Paris")
HEADER = "terminal_id,channel,model,region,branch_id,merchant_id,timezone,opening_hours,status"


def write(path: Path, *rows: str) -> Path:
    """Write a registry CSV with the standard header."""
    path.write_text("\n".join((HEADER, *rows)) + "\n", encoding="utf-8")
    return path


def paris(*args: int) -> datetime:
    """An aware datetime in Europe/Paris."""
    return datetime(*args, tzinfo=PARIS)  # type: ignore[misc]


def test_grammar_days_ranges_and_off() -> None:
    """Day ranges, several ranges a day and 'off' give the open minutes of each weekday."""
    hours = OpeningHours.parse("Mo-Fr 08:30-12:00,14:00-19:00; Sa 10:00-18:00; Su off")
    assert hours.days[0] == ((510, 720), (840, 1140))
    assert hours.days[4] == hours.days[0]
    assert hours.days[5] == ((600, 1080),)
    assert hours.days[6] == ()


def test_a_later_rule_replaces_an_earlier_one_for_its_days() -> None:
    """'Mo-Su 08:00-20:00; Su off' is closed on Sundays and open the other days."""
    hours = OpeningHours.parse("Mo-Su 08:00-20:00; Su off")
    assert hours.days[6] == ()
    assert hours.days[2] == ((480, 1200),)


def test_ranges_past_midnight_and_wrapping_day_ranges() -> None:
    """'Fr-Sa 22:00-02:00' spills into Saturday and Sunday mornings; 'Sa-Mo' wraps the week."""
    hours = OpeningHours.parse("Fr-Sa 22:00-02:00")
    assert hours.days[4] == ((1320, 1440),)
    assert hours.days[5] == ((0, 120), (1320, 1440))
    assert hours.days[6] == ((0, 120),)
    assert OpeningHours.parse("Sa-Mo 00:00-24:00").days[:2] == (((0, 1440),), ())


@pytest.mark.parametrize("text", [
    "", "Mon-Fri 09:00-19:00", "Mo-Fr 9:00-19:00", "Mo-Fr 09:00-25:00", "Mo 24:00-02:00",
    "Mo 09:60-10:00", "Mo 09:00-09:00", "Mo-Fr", "Mo 09:00", "24/24",
])
def test_texts_that_break_the_grammar_are_refused(text: str) -> None:
    """Each malformed opening-hours text raises OpeningHoursError naming the text."""
    with pytest.raises(OpeningHoursError, match="opening hours"):
        OpeningHours.parse(text)


def test_schedule_follows_local_time_across_the_spring_dst_change() -> None:
    """09:00-19:00 in Paris is 08:00-18:00 UTC before 29 March 2026 and 07:00-17:00 UTC after."""
    shop = Schedule(PARIS, OpeningHours.parse("Mo-Su 09:00-19:00"))
    # Saturday 28 March (CET, UTC+1).
    assert not shop.is_open(datetime(2026, 3, 28, 7, 59, tzinfo=UTC))
    assert shop.is_open(datetime(2026, 3, 28, 8, 0, tzinfo=UTC))
    assert shop.is_open(datetime(2026, 3, 28, 17, 59, tzinfo=UTC))
    assert not shop.is_open(datetime(2026, 3, 28, 18, 0, tzinfo=UTC))
    # Sunday 29 March (CEST, UTC+2): the same wall-clock hours, one hour earlier in UTC.
    assert shop.is_open(datetime(2026, 3, 29, 7, 0, tzinfo=UTC))
    assert not shop.is_open(datetime(2026, 3, 29, 17, 30, tzinfo=UTC))
    assert shop.open_since(datetime(2026, 3, 29, 12, 0, tzinfo=UTC)) == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)


def test_night_schedule_across_the_autumn_dst_change() -> None:
    """A 22:00-06:00 schedule stays open through the repeated hour of 25 October 2026."""
    night = Schedule(PARIS, OpeningHours.parse("Mo-Su 22:00-06:00"))
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)   # 02:30 CEST
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET, the same wall time again
    assert night.is_open(first) and night.is_open(second)
    assert not night.is_open(datetime(2026, 10, 25, 5, 0, tzinfo=UTC))  # 06:00 CET
    assert night.is_open(datetime(2026, 10, 25, 4, 59, tzinfo=UTC))    # 05:59 CET
    # The period started on Saturday 22:00 CEST = 20:00 UTC.
    assert night.open_since(second) == datetime(2026, 10, 24, 20, 0, tzinfo=UTC)


def test_open_since_follows_a_period_back_across_midnight_and_is_none_when_closed() -> None:
    """Open since Friday 22:00 on a Saturday 01:30; no open period at all when closed."""
    bar = Schedule(PARIS, OpeningHours.parse("Fr-Sa 22:00-02:00"))
    assert bar.open_since(paris(2026, 3, 7, 1, 30)) == paris(2026, 3, 6, 22, 0).astimezone(UTC)
    assert bar.open_since(paris(2026, 3, 7, 3, 0)) is None
    assert Schedule(PARIS, OpeningHours.parse("24/7")).open_since(paris(2026, 3, 7, 3, 0)) is None


def test_naive_datetimes_are_refused() -> None:
    """Asking a schedule about a naive datetime is a ValueError, never a silent guess."""
    with pytest.raises(ValueError, match="naive"):
        Schedule(PARIS, OpeningHours.parse("24/7")).is_open(datetime(2026, 3, 7, 12, 0))


def test_registry_reads_terminals_with_defaults_and_answers_is_open(tmp_path: Path) -> None:
    """Blank cells take defaults; a mall POS is closed at 3 a.m.; unknown terminals are 24/7 UTC."""
    path = write(
        tmp_path / "terminals.csv",
        "POS00001,POS,Ingenico Move/5000,IDF,,M-1,Europe/Paris,Mo-Sa 10:00-20:00,active",
        "ATM00042,ATM,NCR SelfServ 84,ARA,LYO-01,,Europe/Paris,,",
        "ATM00099,ATM,,ARA,LYO-02,,,24/7,decommissioned",
    )
    registry = read_terminals(path)
    assert len(registry) == 3
    mall = registry.get("POS00001")
    assert mall is not None and mall.model == "Ingenico Move/5000" and mall.branch_id is None
    assert not is_open(mall, paris(2026, 3, 4, 3, 0))
    assert is_open(mall, paris(2026, 3, 4, 15, 0))
    atm = registry.get("ATM00042")
    assert atm is not None and atm.status == "active" and atm.schedule.hours.always
    assert registry.get("ATM00000") is None
    assert is_open(registry.terminal("ATM00000"), paris(2026, 3, 4, 3, 0))
    assert registry.decommissioned() == {"ATM00099"}


def test_schedule_frame_is_vectorised_over_the_fleet(tmp_path: Path) -> None:
    """One call answers open/closed and open-since for known and unknown terminals, in order."""
    registry = read_terminals(write(
        tmp_path / "terminals.csv",
        "POS00001,POS,,,,,Europe/Paris,Mo-Sa 10:00-20:00,active",
        "POS00002,POS,,,,,America/New_York,Mo-Sa 10:00-20:00,active",
    ))
    at = paris(2026, 3, 4, 15, 0)  # 09:00 in New York
    frame = registry.schedule_frame(pl.Series(["POS00002", "UNKNOWN1", "POS00001"]), at)
    assert frame.get_column("terminal_id").to_list() == ["POS00002", "UNKNOWN1", "POS00001"]
    assert frame.get_column("is_open").to_list() == [False, True, True]
    assert frame.get_column("open_since").to_list() == [
        None, None, paris(2026, 3, 4, 10, 0).astimezone(UTC)]


@pytest.mark.parametrize(("row", "message"), [
    ("POS00001,POS,,,,,Europe/Pariss,24/7,active", "unknown time zone 'Europe/Pariss'"),
    ("POS00001,POS,,,,,UTC,Mo-Fr 9-17,active", "'9-17' is not a range"),
    ("POS00001,POS,,,,,UTC,24/7,retired", "status 'retired'"),
    ("POS00001,KIOSK,,,,,UTC,24/7,active", "channel 'KIOSK'"),
])
def test_bad_rows_are_refused_with_the_terminal_named(tmp_path: Path, row: str, message: str) -> None:
    """An unknown zone, bad hours, status or channel is a TerminalRegistryError naming the terminal."""
    with pytest.raises(TerminalRegistryError, match="POS00001") as error:
        read_terminals(write(tmp_path / "terminals.csv", row))
    assert message in str(error.value)


def test_repeated_terminal_ids_are_refused(tmp_path: Path) -> None:
    """The same terminal ID twice is an error, not a silent choice of one row."""
    with pytest.raises(TerminalRegistryError, match="'T1' repeats"):
        read_terminals(write(tmp_path / "t.csv", "T1,ATM,,,,,UTC,24/7,active", "T1,POS,,,,,UTC,24/7,active"))


def test_parquet_registry_is_read_like_csv(tmp_path: Path) -> None:
    """A Parquet file with only some columns gives the same answers as the CSV."""
    path = tmp_path / "terminals.parquet"
    pl.DataFrame({"terminal_id": ["ATM1"], "timezone": ["Europe/Paris"],
                  "opening_hours": ["Mo-Fr 08:00-18:00"]}).write_parquet(path)
    terminal = read_terminals(path).get("ATM1")
    assert terminal is not None and terminal.status == "active" and terminal.channel is None
    assert not is_open(terminal, paris(2026, 3, 7, 12, 0))  # a Saturday


def test_loader_reloads_on_change_and_keeps_the_last_good_snapshot(tmp_path: Path) -> None:
    """A changed file is reloaded; a broken one keeps the previous snapshot and counts a failure."""
    path = write(tmp_path / "terminals.csv", "T1,ATM,,,,,UTC,24/7,active")
    loader = TerminalRegistryLoader(path)
    loader.load()
    assert not loader.reload_if_changed()
    write(path, "T1,ATM,,,,,UTC,24/7,active", "T2,POS,,,,,UTC,Mo-Fr 09:00-17:00,active")
    os.utime(path, ns=(1, 2_000_000_000_000_000_000))
    assert loader.reload_if_changed()
    assert loader.current.get("T2") is not None
    path.write_text(HEADER + "\nT3,POS,,,,,Mars/Olympus,24/7,active\n", encoding="utf-8")
    assert not loader.reload_if_changed()
    assert loader.reload_failures == 1
    assert loader.current.get("T2") is not None and loader.current.get("T3") is None


def test_loader_without_a_file_knows_no_terminal() -> None:
    """No configured path: an empty registry, where every terminal is open 24/7."""
    loader = TerminalRegistryLoader(None)
    assert len(loader.load()) == 0 and not loader.reload_if_changed()
    assert is_open(loader.current.terminal("X"), paris(2026, 3, 7, 3, 0))
