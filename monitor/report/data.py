"""What the fast-correction report counts, gathered from the alert store in one pass.

:func:`gather` reads the period's VIP failures and alerts (:mod:`monitor.alerts.store.report_reads`)
and the terminals ranked by VIP impact (:meth:`~monitor.alerts.store.AlertStore.terminal_impact`,
the ranking of ``cardmon terminals impact``) and counts them into a :class:`ReportData`;
:func:`figures` turns that into the JSON-able numbers the report embeds (every number
the page shows is in it, so a test or a reader's script can check them against the store).

How each number is counted (the report's "How this is counted" section says the same):

- a **VIP failure** counts when it occurred in ``[since, until)`` (event time), on the
  day it occurred in the report's time zone, under its outcome class;
- an **alert** counts when its first failure occurred in the period; its **time to
  acknowledge** runs from its recording to its first acknowledgement, its **time to
  first contact** to its first resolution whose outcome reached the client (called the
  client, reversal or refund arranged, card replaced) — the export's two fields;
- a **median** is the middle value (the mean of the two middle ones for an even count);
  a **p90** is the nearest-rank 90th percentile (the smallest value with at least 90 %
  of the values at or below it);
- **recovery**: the watch's status per alert; ``watching`` counts as *pending*, an alert
  without a watch row as *not watched*.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from monitor.alerts.states import RESOLUTION_OUTCOMES
from monitor.alerts.store import AlertStore, ReportAlert, ReportFailure, TerminalImpact

__all__ = [
    "NOTE_ONLY",
    "NOT_RESOLVED",
    "RECOVERY_STATUSES",
    "Distribution",
    "ManagerSummary",
    "ReportData",
    "figures",
    "gather",
    "nearest_rank",
]

#: The resolution-outcome buckets beside the vocabulary: not resolved yet, note only.
NOT_RESOLVED: Final = "not_resolved"
NOTE_ONLY: Final = "note_only"
#: Recovery buckets, in the order the report shows them.
RECOVERY_STATUSES: Final = ("recovered", "abandoned", "pending", "not_watched")
#: Terminals the report lists (the worst of the period).
TOP_TERMINALS: Final = 10


def nearest_rank(values: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile of ``values`` (non-empty).

    The smallest value with at least ``percent`` % of the values at or below it.
    """
    ordered = sorted(values)
    return ordered[max(math.ceil(percent / 100 * len(ordered)), 1) - 1]


@dataclass(frozen=True, slots=True)
class Distribution:
    """Seconds from an alert's recording to something, over the alerts where it happened.

    Attributes:
        seconds: each alert's seconds, ascending.
        median: the median (seconds), ``None`` when no alert.
        p90: the nearest-rank 90th percentile (seconds), ``None`` when no alert.
    """

    seconds: tuple[float, ...]

    @property
    def count(self) -> int:
        """How many alerts it covers."""
        return len(self.seconds)

    @property
    def median(self) -> float | None:
        """The median (seconds), ``None`` when empty."""
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def p90(self) -> float | None:
        """The nearest-rank 90th percentile (seconds), ``None`` when empty."""
        return nearest_rank(self.seconds, 90) if self.seconds else None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Distribution:
        """Build from unsorted seconds."""
        return cls(tuple(sorted(seconds)))


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagerSummary:
    """One manager's line of the report.

    Attributes:
        manager_id, manager_name: the manager (as recorded on their alerts).
        failures: their clients' VIP failures in the period.
        alerts: their alerts whose first failure fell in the period.
        acknowledge, first_contact: times to acknowledge and to first contact of those alerts.
        resolved: those alerts resolved.
        outcomes: resolution outcome → alerts (every bucket, zeros included).
        recovery: recovery status → alerts (:data:`RECOVERY_STATUSES`).
    """

    manager_id: str
    manager_name: str
    failures: int
    alerts: int
    acknowledge: Distribution
    first_contact: Distribution
    resolved: int
    outcomes: dict[str, int]
    recovery: dict[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportData:
    """Everything the report shows, counted (:func:`gather`).

    Attributes:
        since, until: the period (aware; ``until`` exclusive).
        generated_at: when the report was made (aware, in ``zone``).
        zone: the IANA time zone days and times are shown in.
        team: the team lead's ID of a team report, ``None`` for the whole bank.
        failures_by_day: local date → outcome class → VIP failures (every day of the period).
        failures_by_class: outcome class → VIP failures, most first.
        failures: VIP failures in the period.
        alerts: alerts whose first failure fell in the period.
        acknowledge, first_contact: times over those alerts.
        outcomes: resolution outcome → alerts.
        recovery: recovery status → alerts.
        terminals: the top terminals by VIP impact (bank-wide; the terminal's own classes).
        terminal_classes: those classes.
        managers: one line per manager, by name.
    """

    since: datetime
    until: datetime
    generated_at: datetime
    zone: str
    team: str | None
    failures_by_day: dict[date, dict[str, int]]
    failures_by_class: dict[str, int]
    failures: int
    alerts: int
    acknowledge: Distribution
    first_contact: Distribution
    outcomes: dict[str, int]
    recovery: dict[str, int]
    terminals: list[TerminalImpact]
    terminal_classes: tuple[str, ...]
    managers: list[ManagerSummary] = field(default_factory=list)


def _outcomes(alerts: Sequence[ReportAlert]) -> dict[str, int]:
    counts = Counter(
        NOT_RESOLVED if not a.resolved else (a.resolution_outcome or NOTE_ONLY) for a in alerts
    )
    return {key: counts.get(key, 0) for key in (*RESOLUTION_OUTCOMES, NOTE_ONLY, NOT_RESOLVED)}


def _recovery(alerts: Sequence[ReportAlert]) -> dict[str, int]:
    names = {
        "recovered": "recovered",
        "abandoned": "abandoned",
        "watching": "pending",
        None: "not_watched",
    }
    counts = Counter(names.get(a.recovery, "not_watched") for a in alerts)
    return {key: counts.get(key, 0) for key in RECOVERY_STATUSES}


def _times(alerts: Sequence[ReportAlert]) -> tuple[Distribution, Distribution]:
    acknowledge = [
        max((a.acknowledged_at - a.created_at).total_seconds(), 0.0)
        for a in alerts
        if a.acknowledged_at is not None
    ]
    contact = [
        max((a.contacted_at - a.created_at).total_seconds(), 0.0)
        for a in alerts
        if a.contacted_at is not None
    ]
    return Distribution.of(acknowledge), Distribution.of(contact)


def _days(since: datetime, until: datetime, zone: ZoneInfo) -> list[date]:
    first = since.astimezone(zone).date()
    last = (until - timedelta(microseconds=1)).astimezone(zone).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _managers(
    alerts: Sequence[ReportAlert],
    failures: Sequence[ReportFailure],
    manager_ids: Sequence[str] | None,
) -> list[ManagerSummary]:
    by_manager: dict[str, list[ReportAlert]] = {}  # <manager_id: their alerts>
    for alert in alerts:
        by_manager.setdefault(alert.manager_id, []).append(alert)
    failed = Counter(f.manager_id for f in failures)
    names = {a.manager_id: a.manager_name for a in alerts}
    ids = set(by_manager) | set(failed) | set(manager_ids or ())
    lines = []
    for manager_id in ids:
        theirs = by_manager.get(manager_id, [])
        acknowledge, contact = _times(theirs)
        lines.append(
            ManagerSummary(
                manager_id=manager_id,
                manager_name=names.get(manager_id, manager_id),
                failures=failed.get(manager_id, 0),
                alerts=len(theirs),
                acknowledge=acknowledge,
                first_contact=contact,
                resolved=sum(a.resolved for a in theirs),
                outcomes=_outcomes(theirs),
                recovery=_recovery(theirs),
            )
        )
    return sorted(lines, key=lambda m: (m.manager_name.casefold(), m.manager_id))


def gather(
    store: AlertStore,
    *,
    since: datetime,
    until: datetime,
    zone: str,
    terminal_classes: Sequence[str],
    team: str | None = None,
    manager_ids: Sequence[str] | None = None,
    now: datetime | None = None,
) -> ReportData:
    """Count the report's numbers for ``[since, until)`` from the store.

    Args:
        store: the alert store.
        since: the period's start (aware, inclusive, event time).
        until: the period's end (aware, exclusive, after ``since``).
        zone: an IANA time zone name (days and times are shown there).
        terminal_classes: the outcome classes that are a terminal's own (``rules/health.yaml``
            ``aggregate.classes``), for the top terminals.
        team: the team lead's ID for a team report (``manager_ids`` is then the team).
        manager_ids: only these managers' alerts and failures; ``None``: the whole bank.
        now: the generation time (default: the clock).

    Raises:
        ValueError: a naive time, an empty period, an unknown zone, no terminal class.
        zoneinfo.ZoneInfoNotFoundError: ``zone`` is not a known zone.
    """
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("the report's period needs aware times")
    if until <= since:
        raise ValueError("the report's period ends before it starts")
    tz = ZoneInfo(zone)
    failures = store.report_failures(since=since, until=until, manager_ids=manager_ids)
    alerts = store.report_alerts(since=since, until=until, manager_ids=manager_ids)
    terminals = store.terminal_impact(
        since=since, until=until, classes=terminal_classes, limit=TOP_TERMINALS
    )
    by_day: dict[date, dict[str, int]] = {day: {} for day in _days(since, until, tz)}
    for failure in failures:
        day = by_day.setdefault(failure.occurred_at.astimezone(tz).date(), {})
        day[failure.outcome] = day.get(failure.outcome, 0) + 1
    by_class = Counter(f.outcome for f in failures)
    acknowledge, contact = _times(alerts)
    generated = (now or datetime.now(tz)).astimezone(tz)
    return ReportData(
        since=since,
        until=until,
        generated_at=generated,
        zone=zone,
        team=team,
        failures_by_day=by_day,
        failures_by_class=dict(sorted(by_class.items(), key=lambda item: (-item[1], item[0]))),
        failures=len(failures),
        alerts=len(alerts),
        acknowledge=acknowledge,
        first_contact=contact,
        outcomes=_outcomes(alerts),
        recovery=_recovery(alerts),
        terminals=terminals,
        terminal_classes=tuple(terminal_classes),
        managers=_managers(alerts, failures, manager_ids),
    )


def _distribution(d: Distribution) -> dict[str, Any]:
    return {"count": d.count, "median_seconds": d.median, "p90_seconds": d.p90}


def figures(data: ReportData) -> dict[str, Any]:
    """The report's numbers as JSON-able values (embedded in the page, ``id="report-figures"``).

    Returns:
        ``period`` (``since``, ``until``, ``zone``, ``generated_at``, ``team``), ``failures``,
        ``alerts``, ``failures_by_day`` (ISO date → class → count), ``failures_by_class``,
        ``time_to_acknowledge`` and ``time_to_first_contact`` (``count``, ``median_seconds``,
        ``p90_seconds``), ``outcomes``, ``recovery``, ``terminals`` (rank order: ``terminal_id``,
        ``channel``, ``clients``, ``failures``, ``managers``) and ``managers`` (by name: the
        same keys per manager, with ``manager_id`` and ``manager_name``).
    """
    return {
        "period": {
            "since": data.since.isoformat(),
            "until": data.until.isoformat(),
            "zone": data.zone,
            "generated_at": data.generated_at.isoformat(),
            "team": data.team,
        },
        "failures": data.failures,
        "alerts": data.alerts,
        "failures_by_day": {
            day.isoformat(): dict(sorted(classes.items()))
            for day, classes in sorted(data.failures_by_day.items())
        },
        "failures_by_class": data.failures_by_class,
        "time_to_acknowledge": _distribution(data.acknowledge),
        "time_to_first_contact": _distribution(data.first_contact),
        "outcomes": data.outcomes,
        "recovery": data.recovery,
        "terminals": [
            {
                "terminal_id": t.terminal_id,
                "channel": t.channel,
                "clients": t.clients,
                "failures": t.failures,
                "managers": t.managers,
            }
            for t in data.terminals
        ],
        "managers": [
            {
                "manager_id": m.manager_id,
                "manager_name": m.manager_name,
                "failures": m.failures,
                "alerts": m.alerts,
                "resolved": m.resolved,
                "time_to_acknowledge": _distribution(m.acknowledge),
                "time_to_first_contact": _distribution(m.first_contact),
                "outcomes": m.outcomes,
                "recovery": m.recovery,
            }
            for m in data.managers
        ],
    }
