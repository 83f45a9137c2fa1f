"""Manager preferences: working hours, quiet hours and absences, in the manager's zone, across DST."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from monitor.alerts.delivery.channels import EmailChannel
from monitor.alerts.delivery.worker import DeliveryWorker
from monitor.alerts.preferences import (
    covering_manager,
    delivery_time,
    in_quiet_hours,
    is_away,
    parse_away,
)
from monitor.alerts.store import AlertStore
from monitor.domain import Manager, VipFailure
from monitor.hours import local_instant
from monitor.pipeline.vips import RegistryError, read_registry

from .conftest import SmtpServer

PARIS = "Europe/Paris"
# Europe/Paris in 2026: summer time starts Sun 29 March (02:00 → 03:00), ends Sun 25 October
# (03:00 → 02:00).
CLAIRE = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example",
                 timezone=PARIS, backup_manager_id="RM-042",
                 working_hours="Mo-Fr 08:00-18:00", quiet_hours="Mo-Su 21:00-07:00")
JONAS = Manager(manager_id="RM-042", name="Jonas Weber", email="jonas.weber@bank.example",
                timezone="Europe/Berlin", backup_manager_id="RM-900")
INES = Manager(manager_id="RM-900", name="Ines Duarte", email="ines.duarte@bank.example",
               timezone="Europe/Lisbon")
HOLIDAY = {"away_from": datetime(2026, 8, 3, tzinfo=UTC), "away_until": datetime(2026, 8, 15, tzinfo=UTC)}


def _paris(*args: int) -> datetime:
    return local_instant(date(*args[:3]), time(*args[3:]), __import__("zoneinfo").ZoneInfo(PARIS))


def test_local_times_on_the_dst_days_follow_rfc_5545() -> None:
    """A skipped 02:30 (29 March) reads as 03:30 summer time; a repeated 02:30 (25 October) is the first one."""
    assert _paris(2026, 3, 29, 2, 30) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST
    assert _paris(2026, 10, 25, 2, 30) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # first, CEST
    assert _paris(2026, 3, 28, 8, 0) == datetime(2026, 3, 28, 7, 0, tzinfo=UTC)  # CET
    assert _paris(2026, 3, 30, 8, 0) == datetime(2026, 3, 30, 6, 0, tzinfo=UTC)  # CEST


@pytest.mark.parametrize(
    ("recorded", "due"),
    [
        # Friday evening before spring forward → Monday 08:00 summer time (06:00 UTC).
        (datetime(2026, 3, 27, 19, 0, tzinfo=UTC), datetime(2026, 3, 30, 6, 0, tzinfo=UTC)),
        # Saturday before fall back → Monday 08:00 winter time (07:00 UTC).
        (datetime(2026, 10, 24, 10, 0, tzinfo=UTC), datetime(2026, 10, 26, 7, 0, tzinfo=UTC)),
        # Monday 06:30 summer time: before work → 08:00 the same day.
        (datetime(2026, 3, 30, 4, 30, tzinfo=UTC), datetime(2026, 3, 30, 6, 0, tzinfo=UTC)),
    ],
)
def test_a_low_alert_waits_for_the_next_working_window_across_dst(recorded: datetime, due: datetime) -> None:
    """Low severity outside working hours is due at the next local 08:00, whatever the DST change in between."""
    assert delivery_time(CLAIRE, "low", recorded) == due


def test_a_low_alert_in_working_hours_goes_at_once() -> None:
    """Low severity on a Tuesday at 10:00 Paris time is due immediately."""
    now = _paris(2026, 3, 31, 10, 0)
    assert delivery_time(CLAIRE, "low", now) == now


def test_high_always_goes_and_medium_waits_only_for_quiet_hours() -> None:
    """At 23:00 on a Sunday, high goes now, medium waits for 07:00 (end of quiet hours), low for Monday 08:00."""
    sunday_night = _paris(2026, 3, 29, 23, 0)  # the spring-forward day, summer time already
    assert in_quiet_hours(CLAIRE, sunday_night)
    assert delivery_time(CLAIRE, "high", sunday_night) == sunday_night
    assert delivery_time(CLAIRE, "medium", sunday_night) == datetime(2026, 3, 30, 5, 0, tzinfo=UTC)
    assert delivery_time(CLAIRE, "low", sunday_night) == datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
    saturday_noon = _paris(2026, 3, 28, 12, 0)  # off work but not quiet: medium goes now
    assert delivery_time(CLAIRE, "medium", saturday_noon) == saturday_noon


def test_a_manager_without_preferences_gets_everything_at_once() -> None:
    """No working_hours and no quiet_hours: every severity goes out immediately, at any hour."""
    plain = Manager(manager_id="RM-1", name="Plain", timezone=PARIS)
    night = _paris(2026, 10, 25, 2, 30)
    assert [delivery_time(plain, s, night) for s in ("low", "medium", "high")] == [night] * 3


def test_quiet_hours_inside_working_hours_hold_low_until_both_allow_it() -> None:
    """Working 08:00-20:00 with quiet 12:00-14:00: a low alert at 12:30 waits for 14:00."""
    lunch = replace(CLAIRE, working_hours="Mo-Su 08:00-20:00", quiet_hours="Mo-Su 12:00-14:00")
    assert delivery_time(lunch, "low", _paris(2026, 10, 25, 12, 30)) == _paris(2026, 10, 25, 14, 0)


def test_an_absence_by_dates_is_inclusive_in_the_managers_zone() -> None:
    """away_from 2026-08-03 / away_until 2026-08-14 cover 3 Aug 00:00 to 15 Aug 00:00 Paris time."""
    zone = __import__("zoneinfo").ZoneInfo(PARIS)
    start = parse_away("2026-08-03", zone, end=False)
    end = parse_away("2026-08-14", zone, end=True)
    assert (start, end) == (datetime(2026, 8, 2, 22, 0, tzinfo=UTC), datetime(2026, 8, 14, 22, 0, tzinfo=UTC))
    assert parse_away("2026-08-14T13:00", zone, end=True) == datetime(2026, 8, 14, 11, 0, tzinfo=UTC)
    away = replace(CLAIRE, away_from=start, away_until=end)
    assert not is_away(away, start - timedelta(seconds=1))
    assert is_away(away, start) and is_away(away, end - timedelta(seconds=1))
    assert not is_away(away, end)


def test_an_away_managers_alerts_follow_the_backup_chain() -> None:
    """Claire away → Jonas; Jonas away too → Ines; everyone away → Claire keeps it, and the note says so."""
    during = datetime(2026, 8, 5, 9, 0, tzinfo=UTC)
    claire = replace(CLAIRE, **HOLIDAY)
    managers = {m.manager_id: m for m in (claire, JONAS, INES)}
    first = covering_manager(CLAIRE, managers, during)
    assert first.manager == JONAS and first.routed
    assert first.note == "routed to backup: away — RM-017 away, sent to RM-042 (Jonas Weber)"
    managers["RM-042"] = replace(JONAS, **HOLIDAY)
    second = covering_manager(CLAIRE, managers, during)
    assert second.manager == INES
    assert second.note == "routed to backup: away — RM-017, RM-042 away, sent to RM-900 (Ines Duarte)"
    managers["RM-900"] = replace(INES, **HOLIDAY, backup_manager_id="RM-017")  # a loop ends too
    nobody = covering_manager(CLAIRE, managers, during)
    assert nobody.manager.manager_id == "RM-017" and not nobody.routed
    assert nobody.note == ("not routed: RM-017, RM-042, RM-900 away, no backup available; "
                           "kept with RM-017")
    assert covering_manager(CLAIRE, managers, datetime(2026, 9, 1, tzinfo=UTC)).note is None


def test_the_store_holds_a_low_alert_until_monday_and_says_so(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """A low alert recorded on Saturday is not claimable before Monday 08:00 Paris time; its history says why."""
    saturday = datetime(2026, 3, 28, 15, 0, tzinfo=UTC)
    monday_8am = datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
    with AlertStore(store_location) as store:
        result = store.record([make_failure("ev-1", saturday, manager=CLAIRE, severity="low")],
                              now=saturday, sinks=["jsonl"], channels=["email"])
        [alert_id] = result.new_alert_ids
        # The sink is not a person: it gets the alert at once; the manager's e-mail waits.
        [sink] = store.claim_due(saturday)
        assert (sink.channel, sink.next_attempt_at) == ("jsonl", saturday)
        store.mark_sent(sink.delivery_id, saturday)
        assert store.claim_due(monday_8am - timedelta(seconds=1)) == []
        assert [d.channel for d in store.claim_due(monday_8am)] == ["email"]
        opened = store.history(alert_id)[0]
        assert opened.action == "opened"
        assert opened.note == "low alert held for RM-017's working hours: due Mon 30 Mar 2026 08:00 CEST"


def test_a_high_alert_at_night_is_due_at_once_through_the_store(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """A high alert at 03:30 on the spring-forward Sunday is claimable immediately, with no note."""
    night = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    with AlertStore(store_location) as store:
        [alert_id] = store.record([make_failure("ev-1", night, manager=CLAIRE)], now=night).new_alert_ids
        assert [d.channel for d in store.claim_due(night)] == ["email"]
        assert store.history(alert_id)[0].note is None


async def test_an_away_managers_alert_reaches_the_backup_by_email(
    store_location: Path | str, make_failure: Callable[..., VipFailure], smtp_server: SmtpServer
) -> None:
    """Claire on holiday: her client's alert is e-mailed to Jonas only, and the history says 'routed to backup: away'."""
    now = datetime(2026, 8, 5, 9, 0, tzinfo=UTC)
    claire = replace(CLAIRE, **HOLIDAY)
    managers = {m.manager_id: m for m in (claire, JONAS, INES)}
    with AlertStore(store_location) as store:
        [alert_id] = store.record([make_failure("ev-1", now, manager=claire)], now=now,
                                  managers=managers).new_alert_ids
        assert store.delivery_recipients(alert_id) == {1: "RM-042"}
        email = EmailChannel(smtp_server.host, smtp_server.port, sender="cardmon@bank.example", timeout=5)
        assert await DeliveryWorker(store, {"email": email}).deliver_due() == 1
        [entry, sent] = store.history(alert_id)
        assert entry.note == "routed to backup: away — RM-017 away, sent to RM-042 (Jonas Weber)"
        assert (sent.action, sent.actor, sent.via) == ("notified", "RM-042", "email")
    assert smtp_server.mail.recipients == [["jonas.weber@bank.example"]]
    [message] = smtp_server.mail.messages
    assert "Ada Lovelace" in str(message["Subject"])
    assert "[BACKUP]" in str(message["Subject"]) and "ESCALATED" not in str(message["Subject"])
    assert "Routed to you as backup: Claire" in message.get_content()


def test_an_away_manager_with_everyone_away_keeps_the_alert(
    store_location: Path | str, make_failure: Callable[..., VipFailure]
) -> None:
    """With the whole backup chain on holiday, the alert goes to its own manager and the history says so."""
    now = datetime(2026, 8, 5, 9, 0, tzinfo=UTC)
    managers = {m.manager_id: replace(m, **HOLIDAY) for m in (CLAIRE, JONAS, INES)}
    with AlertStore(store_location) as store:
        [alert_id] = store.record([make_failure("ev-1", now, manager=managers["RM-017"])], now=now,
                                  managers=managers).new_alert_ids
        assert store.delivery_recipients(alert_id) == {}
        assert [d.channel for d in store.claim_due(now)] == ["email"]
        assert store.history(alert_id)[0].note == (
            "not routed: RM-017, RM-042, RM-900 away, no backup available; kept with RM-017")


def _registry(tmp_path: Path, managers: str) -> tuple[Path, Path]:
    customers = tmp_path / "customers.csv"
    customers.write_text("customer_id,name,tier,manager_id\nC-1,Ada Lovelace,private,RM-017\n")
    path = tmp_path / "managers.csv"
    path.write_text(managers)
    return customers, path


def test_the_registry_reads_preferences_in_the_managers_zone(tmp_path: Path) -> None:
    """working_hours, quiet_hours, away_from/away_until and digest_at are read and anchored in the manager's zone."""
    customers, managers = _registry(tmp_path, (
        "manager_id,name,email,timezone,working_hours,quiet_hours,away_from,away_until,digest_at\n"
        "RM-017,Claire Martin,c@bank.example,Europe/Paris,Mo-Fr 08:00-18:00,Mo-Su 21:00-07:00,"
        "2026-08-03,2026-08-14,18:00\n"))
    manager = read_registry(customers, managers).managers["RM-017"]
    assert (manager.working_hours, manager.quiet_hours) == ("Mo-Fr 08:00-18:00", "Mo-Su 21:00-07:00")
    assert manager.away_from == datetime(2026, 8, 2, 22, 0, tzinfo=UTC)
    assert manager.away_until == datetime(2026, 8, 14, 22, 0, tzinfo=UTC)
    assert manager.digest_at == time(18, 0)


@pytest.mark.parametrize(
    ("columns", "values", "message"),
    [
        ("working_hours", "Mo-Fr 8-18", "'8-18' is not a range"),
        ("quiet_hours", "Xx 21:00-07:00", "'Xx' is not a day"),
        ("away_from", "next monday", "away_from 'next monday' is not a date"),
        ("away_from,away_until", "2026-08-14,2026-08-03", "away_until is not after away_from"),
        ("digest_at", "6pm", "digest_at '6pm' is not a time HH:MM"),
    ],
)
def test_bad_preferences_refuse_the_registry_naming_the_manager(
    tmp_path: Path, columns: str, values: str, message: str
) -> None:
    """A malformed preference column stops the load with the file, the manager and the problem."""
    customers, managers = _registry(tmp_path, f"manager_id,name,{columns}\nRM-017,Claire,{values}\n")
    with pytest.raises(RegistryError, match=r"managers\.csv: manager 'RM-017': .*" + message):
        read_registry(customers, managers)
