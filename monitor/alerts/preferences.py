"""A relationship manager's preferences: when a message may reach them, and who covers.

Four optional columns of the managers file, all read in the manager's own IANA
time zone (``timezone``) with :mod:`zoneinfo`, so they keep their meaning across
daylight-saving changes:

* ``working_hours`` — when the manager works, in the opening-hours grammar of the
  terminal registry (:class:`monitor.hours.OpeningHours`:
  ``Mo-Fr 08:00-18:00``, ``Mo-Th 08:00-18:00; Fr 08:00-15:00``). Empty: always.
* ``quiet_hours`` — when the manager must not be disturbed, same grammar
  (``Mo-Su 21:00-07:00``). Empty: never.
* ``away_from`` / ``away_until`` — an absence (holiday, sick leave): a date
  (``2026-08-03``: from the start of that local day; as ``away_until``, the last day
  away, inclusive) or a local date and time (``2026-08-14T13:00``). Either may be
  empty (open-ended).

When a message may go out (:func:`delivery_time`):

============ ===============================================================
``high``     at once, always (working hours, quiet hours and nights alike).
``medium``   at once, unless in quiet hours: then when they end.
``low``      in working hours and outside quiet hours; else at the start of
             the next such window.
============ ===============================================================

Why ``medium`` does not wait for working hours: a medium alert is a client-facing
problem (a declined card, a failing terminal) the client may phone about in the
evening; the manager should know first. A manager who wants the evening or the
night to themselves says so with ``quiet_hours``.

Who gets it (:func:`covering_manager`): an away manager's alerts go to their
backup (``backup_manager_id``); an away backup passes them on to their own backup,
and so on; when nobody in the chain is in, the alert stays with its own manager.

Local times that do not exist or exist twice follow RFC 5545 (and PEP 495's
``fold=0``): on the spring-forward day 02:30 is read with the offset before the gap
(it becomes 03:30 summer time); on the fall-back day it is the first 02:30.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitor.domain import Manager, Severity
from monitor.errors import ConfigurationError
from monitor.hours import OpeningHours, OpeningHoursError, local_instant

__all__ = [
    "Coverage",
    "PreferenceError",
    "covering_manager",
    "delivery_time",
    "in_quiet_hours",
    "in_working_hours",
    "is_away",
    "manager_zone",
    "parse_away",
    "parse_digest_at",
    "parse_hours",
]

# How far ahead a window is looked for: a week has every weekday once, plus a day
# for windows that start late on the last one.
_HORIZON_DAYS: Final = 8
_MINUTES_PER_DAY: Final = 24 * 60
_DIGEST_AT: Final = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class PreferenceError(ConfigurationError):
    """A preference column breaks its grammar (the message names the column and value)."""


@functools.lru_cache(maxsize=1024)
def parse_hours(text: str) -> OpeningHours:
    """Parse a ``working_hours`` or ``quiet_hours`` text (cached: registries repeat them).

    Raises:
        PreferenceError: the text breaks the opening-hours grammar.
    """
    try:
        return OpeningHours.parse(text)
    except OpeningHoursError as error:
        raise PreferenceError(str(error)) from None


def manager_zone(manager: Manager) -> ZoneInfo:
    """The manager's zone; an unknown name falls back to UTC (the registry refuses those)."""
    try:
        return ZoneInfo(manager.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_away(text: str | None, zone: ZoneInfo, *, end: bool) -> datetime | None:
    """Parse an ``away_from`` (``end=False``) or ``away_until`` (``end=True``) value.

    Args:
        text: ``YYYY-MM-DD`` or an ISO 8601 date and time; a time without an offset is
            local to ``zone``. Blank or ``None``: open-ended.
        zone: the manager's zone.
        end: a bare date as ``away_until`` is the last day away, so the absence ends
            at the start of the next local day.

    Returns:
        The bound as an aware UTC datetime, or ``None``.

    Raises:
        PreferenceError: the value is neither a date nor a date and time.
    """
    if text is None or not text.strip():
        return None
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return local_instant(day + timedelta(days=1 if end else 0), time(0, 0), zone)
        moment = datetime.fromisoformat(value)
    except ValueError:
        column = "away_until" if end else "away_from"
        raise PreferenceError(f"{column} {value[:40]!r} is not a date (YYYY-MM-DD) or "
                              "a date and time (YYYY-MM-DDTHH:MM)") from None
    if moment.tzinfo is None:
        return local_instant(moment.date(), moment.time(), zone)
    return moment.astimezone(UTC)


def parse_digest_at(text: str | None) -> time | None:
    """Parse a ``digest_at`` value (``HH:MM``, 24-hour local time); blank → ``None``.

    Raises:
        PreferenceError: not ``HH:MM``.
    """
    if text is None or not text.strip():
        return None
    match = _DIGEST_AT.match(text.strip())
    if match is None:
        raise PreferenceError(f"digest_at {text.strip()[:20]!r} is not a time HH:MM (e.g. 18:00)")
    return time(int(match[1]), int(match[2]))


def _aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("a naive datetime has no place past the decoder; pass an aware one")


def is_away(manager: Manager, at: datetime) -> bool:
    """Whether ``at`` (aware) falls in the manager's absence ``[away_from, away_until)``."""
    _aware(at)
    if manager.away_from is None and manager.away_until is None:
        return False
    started = manager.away_from is None or manager.away_from <= at
    return started and (manager.away_until is None or at < manager.away_until)


def _inside(text: str | None, zone: ZoneInfo, at: datetime) -> bool:
    local = at.astimezone(zone)
    return parse_hours(text).interval_at(local.weekday(), local.hour * 60 + local.minute) is not None \
        if text else False


def in_working_hours(manager: Manager, at: datetime) -> bool:
    """Whether ``at`` (aware) is in the manager's working hours (no column: always)."""
    _aware(at)
    return True if not manager.working_hours else _inside(manager.working_hours, manager_zone(manager), at)


def in_quiet_hours(manager: Manager, at: datetime) -> bool:
    """Whether ``at`` (aware) is in the manager's quiet hours (no column: never)."""
    _aware(at)
    return _inside(manager.quiet_hours, manager_zone(manager), at)


def _may_send(manager: Manager, severity: Severity, at: datetime) -> bool:
    if severity == "high":
        return True
    if in_quiet_hours(manager, at):
        return False
    return severity == "medium" or in_working_hours(manager, at)


def _boundaries(manager: Manager, now: datetime) -> list[datetime]:
    """Instants after ``now`` where the answer of :func:`_may_send` can change, sorted."""
    zone = manager_zone(manager)
    today = now.astimezone(zone).date()
    found: set[datetime] = set()
    for text in (manager.working_hours, manager.quiet_hours):
        if not text:
            continue
        hours = parse_hours(text)
        for offset in range(_HORIZON_DAYS + 1):
            day = today + timedelta(days=offset)
            for start, end in hours.days[day.weekday()]:
                for minute in (start, end):
                    if minute >= _MINUTES_PER_DAY:  # 24:00 is the next day's 00:00
                        moment = local_instant(day + timedelta(days=1), time(0, 0), zone)
                    else:
                        moment = local_instant(day, time(minute // 60, minute % 60), zone)
                    if moment > now:
                        found.add(moment)
    return sorted(found)


def delivery_time(manager: Manager, severity: Severity, now: datetime) -> datetime:
    """When a message of ``severity`` may reach ``manager``: ``now`` or a later instant.

    Args:
        manager: the recipient, with their preferences.
        severity: the alert's severity.
        now: the current time (aware).

    Returns:
        ``now`` when it may go out at once, else the start (UTC) of the next window
        in which it may (see the table in the module docstring). Preferences with no
        such window in the coming week (``working_hours`` entirely inside
        ``quiet_hours``) give ``now``: a message is never held forever.

    Raises:
        ValueError: ``now`` is naive.
    """
    _aware(now)
    if _may_send(manager, severity, now):
        return now
    for moment in _boundaries(manager, now):
        if _may_send(manager, severity, moment):
            return moment
    return now


@dataclass(frozen=True, slots=True)
class Coverage:
    """Who receives a manager's alerts at one instant (:func:`covering_manager`).

    Attributes:
        manager: the recipient: the manager, or the first backup who is in.
        note: why, for the alert's history (``None`` when the manager is in).
    """

    manager: Manager
    note: str | None = None

    @property
    def routed(self) -> bool:
        """Whether someone else than the alert's own manager receives it."""
        return self.note is not None and not self.note.startswith("not routed")


def covering_manager(manager: Manager, managers: Mapping[str, Manager], at: datetime) -> Coverage:
    """Return who receives ``manager``'s alerts at ``at``: them, or the first backup who is in.

    The backup chain (``backup_manager_id``) is followed while the current person is
    away, visiting each manager once. The registry's entry is preferred to the
    alert's snapshot of the manager (it holds today's absences).

    Args:
        manager: the client's relationship manager (a snapshot is fine).
        managers: the registry's managers by ID.
        at: the current time (aware).

    Returns:
        A :class:`Coverage`; its ``note`` reads ``routed to backup: away — ...`` or,
        when nobody in the chain is in, ``not routed: ... away, no backup available``.
    """
    own = managers.get(manager.manager_id, manager)
    if not is_away(own, at):
        return Coverage(own)
    chain = [own.manager_id]
    current = own
    while current.backup_manager_id and current.backup_manager_id not in chain:
        backup = managers.get(current.backup_manager_id)
        if backup is None:
            break
        chain.append(backup.manager_id)
        if not is_away(backup, at):
            away = ", ".join(chain[:-1])
            return Coverage(backup, f"routed to backup: away — {away} away, "
                                    f"sent to {backup.manager_id} ({backup.name})")
        current = backup
    return Coverage(own, f"not routed: {', '.join(chain)} away, no backup available; "
                         f"kept with {own.manager_id}")
