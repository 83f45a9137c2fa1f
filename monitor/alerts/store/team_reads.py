"""Reading what a team lead's page shows: alerts waiting and times to acknowledge, by manager.

A part of :class:`~monitor.alerts.store.AlertStore` that only reads, for the workspace's
team page (:meth:`TeamQueries.acknowledgement_counts`). An alert counts for the manager
of its client when it was raised (``alerts.manager_id``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from monitor.alerts.store.connection import StoreConnection
from monitor.alerts.store.rows import parse_utc, utc_text

__all__ = ["AcknowledgementCounts", "TeamQueries"]

# The states of an alert nobody has acknowledged yet.
_UNACKNOWLEDGED: Final = "('open', 'notified', 'failed')"
# The most managers one call reads (a team; SQL parameters stay well under any limit).
_MAX_MANAGERS: Final = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class AcknowledgementCounts:
    """One manager's acknowledgements (:meth:`TeamQueries.acknowledgement_counts`).

    Attributes:
        manager_id: the manager (the alert's client's, when it was raised).
        unacknowledged: alerts in state ``open``, ``notified`` or ``failed``.
        oldest_unacknowledged_at: when the oldest of them was recorded (UTC), ``None`` if none.
        acknowledge_seconds: for each alert first acknowledged at or after ``since``, the
            seconds from its recording to that acknowledgement, in no particular order.
    """

    manager_id: str
    unacknowledged: int = 0
    oldest_unacknowledged_at: datetime | None = None
    acknowledge_seconds: tuple[float, ...] = ()


class TeamQueries(StoreConnection):
    """Acknowledgements by manager, read from :class:`~monitor.alerts.store.AlertStore`."""

    def acknowledgement_counts(self, manager_ids: list[str] | tuple[str, ...], *,
                               since: datetime) -> dict[str, AcknowledgementCounts]:
        """Unacknowledged alerts and times to acknowledge, per manager.

        Args:
            manager_ids: the managers (at most 500); each gets an entry, zeros if none.
            since: acknowledgements at or after this time count (aware).

        Raises:
            ValueError: too many managers, or a naive ``since``.
        """
        if len(manager_ids) > _MAX_MANAGERS:
            raise ValueError(f"at most {_MAX_MANAGERS} managers")
        ids = sorted(set(manager_ids))
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        with self._lock:
            waiting = self._conn.execute(
                f"""SELECT manager_id, count(*) AS waiting, min(created_at) AS oldest FROM alerts
                WHERE manager_id IN ({marks}) AND state IN {_UNACKNOWLEDGED} GROUP BY manager_id""",
                ids).fetchall()
            acked = self._conn.execute(
                f"""SELECT a.manager_id, a.created_at, min(h.at) AS acked_at
                FROM alert_history h JOIN alerts a ON a.alert_id = h.alert_id
                WHERE h.action = 'acknowledged' AND a.manager_id IN ({marks})
                GROUP BY a.alert_id, a.manager_id, a.created_at
                HAVING min(h.at) >= ?""", (*ids, utc_text(since))).fetchall()
        seconds: dict[str, list[float]] = {}  # <manager_id: seconds to acknowledge, per alert>
        for row in acked:
            took = (parse_utc(row["acked_at"]) - parse_utc(row["created_at"])).total_seconds()
            seconds.setdefault(row["manager_id"], []).append(max(0.0, took))
        counts = {row["manager_id"]: (int(row["waiting"]), parse_utc(row["oldest"])) for row in waiting}
        return {m: AcknowledgementCounts(
                    manager_id=m, unacknowledged=counts.get(m, (0, None))[0],
                    oldest_unacknowledged_at=counts.get(m, (0, None))[1],
                    acknowledge_seconds=tuple(seconds.get(m, ())))
                for m in ids}
