"""Opening hours and local wall-clock time, DST-safe: one grammar for terminals and managers.

Terminals (``opening_hours`` in the terminal registry) and relationship managers
(``working_hours`` and ``quiet_hours`` in the managers file) share this grammar.

Opening-hours grammar (a small subset of OpenStreetMap ``opening_hours``)::

    hours   := "24/7" | rule (";" rule)*
    rule    := days " " ranges | days " off"
    days    := day ("-" day)? ("," day ("-" day)?)*     day := Mo|Tu|We|Th|Fr|Sa|Su
    ranges  := HH:MM "-" HH:MM ("," HH:MM "-" HH:MM)*

``Mo-Fr 09:00-19:00; Sa 10:00-18:00`` is open on weekdays 09:00–19:00 and on
Saturdays 10:00–18:00, closed on Sundays. ``24:00`` is allowed as an end; a range
whose end is not after its start runs past midnight (``Fr-Sa 22:00-02:00`` is
open until 02:00 on Saturday and Sunday). A later rule for the same day replaces
the earlier ones (``Mo-Su 08:00-20:00; Su off``). Times are the terminal's local
wall-clock time, so a schedule keeps its meaning across daylight-saving changes.

:class:`Schedule` answers questions about instants in a zone; :func:`local_instant`
turns a local date and time into an instant. Local times that do not exist or exist
twice follow RFC 5545 (and PEP 495's ``fold=0``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from monitor.errors import ConfigurationError

__all__ = ["OpeningHours", "OpeningHoursError", "Schedule", "local_instant"]


class OpeningHoursError(ConfigurationError):
    """An ``opening_hours`` text breaks the grammar (see the module docstring)."""


_DAYS: Final = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
_MINUTES_PER_DAY: Final = 24 * 60
_RANGE: Final = re.compile(r"^([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})$")
_Intervals = tuple[tuple[int, int], ...]  # <(start minute, end minute) of a day, sorted, disjoint>


def _minute(hours: str, minutes: str, *, end: bool, text: str) -> int:
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > _MINUTES_PER_DAY or (value == _MINUTES_PER_DAY and not end):
        raise OpeningHoursError(f"opening hours {text!r}: {hours}:{minutes} is not a time of day")
    return value


def _days(spec: str, text: str) -> list[int]:
    days: list[int] = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            raise OpeningHoursError(f"opening hours {text!r}: {part!r} is not a day or day range "
                                    f"(use {', '.join(_DAYS)})")
        start, stop = _DAYS.index(first), _DAYS.index(last or first)
        days.extend((start + k) % 7 for k in range((stop - start) % 7 + 1))
    return days


@dataclass(frozen=True, slots=True)
class OpeningHours:
    """A parsed ``opening_hours`` text: open minutes of each weekday (Monday = 0).

    Attributes:
        text: the text as written in the registry.
        days: for each weekday, its open intervals in local minutes since midnight,
            ``[start, end)``; ranges past midnight are already split across the two days.
    """

    text: str
    days: tuple[_Intervals, ...]

    @classmethod
    def parse(cls, text: str) -> OpeningHours:
        """Parse ``text`` once (see the grammar in the module docstring).

        Raises:
            OpeningHoursError: the text breaks the grammar.
        """
        cleaned = " ".join(text.split())
        if cleaned == "24/7":
            return cls(text, tuple(((0, _MINUTES_PER_DAY),) for _ in range(7)))
        own: dict[int, list[tuple[int, int]]] = {}  # <weekday: ranges as written, maybe overnight>
        for rule in filter(None, (r.strip() for r in cleaned.split(";"))):
            spec, _, ranges = rule.partition(" ")
            days = _days(spec, text)
            written: list[tuple[int, int]] = []
            if ranges != "off":
                for item in ranges.split(","):
                    match = _RANGE.match(item.strip())
                    if match is None:
                        raise OpeningHoursError(f"opening hours {text!r}: {item.strip()!r} is not "
                                                "a range HH:MM-HH:MM (or 'off')")
                    start = _minute(match[1], match[2], end=False, text=text)
                    end = _minute(match[3], match[4], end=True, text=text)
                    if start == end:
                        raise OpeningHoursError(f"opening hours {text!r}: {item.strip()!r} is empty")
                    written.append((start, end))
            for day in days:  # a later rule for a day replaces the earlier ones
                own[day] = written
        if not own:
            raise OpeningHoursError(f"opening hours {text!r}: no rule (write '24/7' or e.g. "
                                    "'Mo-Fr 09:00-19:00')")
        per_day: list[list[tuple[int, int]]] = [[] for _ in range(7)]
        for day, day_ranges in own.items():
            for start, end in day_ranges:
                if end > start:
                    per_day[day].append((start, end))
                else:  # runs past midnight into the next day
                    per_day[day].append((start, _MINUTES_PER_DAY))
                    if end:
                        per_day[(day + 1) % 7].append((0, end))
        return cls(text, tuple(_merge(intervals) for intervals in per_day))

    @property
    def always(self) -> bool:
        """Open every minute of the week."""
        return all(day == ((0, _MINUTES_PER_DAY),) for day in self.days)

    def interval_at(self, weekday: int, minute: int) -> tuple[int, int] | None:
        """The open interval of ``weekday`` holding local ``minute``, or ``None`` (closed)."""
        for start, end in self.days[weekday]:
            if start <= minute < end:
                return start, end
        return None


def _merge(intervals: list[tuple[int, int]]) -> _Intervals:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


@dataclass(frozen=True, slots=True)
class Schedule:
    """Opening hours in a time zone: answers questions about instants (DST-safe).

    Every question converts the instant to the zone's local wall-clock time first
    (:mod:`zoneinfo`), so ``09:00-19:00`` means 09:00 local in winter and in summer.
    """

    zone: ZoneInfo
    hours: OpeningHours

    def _local(self, at: datetime) -> datetime:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("a naive datetime has no place past the decoder; pass an aware one")
        return at.astimezone(self.zone)

    def is_open(self, at: datetime) -> bool:
        """Whether the terminal is open at ``at`` (aware). Raises ValueError when naive."""
        local = self._local(at)
        return self.hours.interval_at(local.weekday(), local.hour * 60 + local.minute) is not None

    def open_since(self, at: datetime) -> datetime | None:
        """Start (UTC) of the open period holding ``at``; ``None`` when closed or always open.

        Periods that run across midnight are followed back to the day they started.
        """
        if self.hours.always:
            return None
        local = self._local(at)
        day: date = local.date()
        found = self.hours.interval_at(day.weekday(), local.hour * 60 + local.minute)
        if found is None:
            return None
        start = found[0]
        for _ in range(7):  # at most a week back (a week that is not 24/7 has a gap)
            if start != 0:
                break
            previous = day - timedelta(days=1)
            last = self.hours.days[previous.weekday()]
            if not last or last[-1][1] != _MINUTES_PER_DAY:
                break
            day, start = previous, last[-1][0]
        naive = datetime(day.year, day.month, day.day, start // 60, start % 60)
        return naive.replace(tzinfo=self.zone).astimezone(UTC)


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The instant (UTC) when the wall clock of ``zone`` shows ``at`` on ``day``.

    A time skipped by a spring-forward change is read with the offset before the
    gap (02:30 → 03:30 summer time); a time repeated by a fall-back change is its
    first occurrence (RFC 5545, PEP 495 ``fold=0``).
    """
    naive = datetime.combine(day, at.replace(tzinfo=None, fold=0))
    return naive.replace(tzinfo=zone).astimezone(UTC)
