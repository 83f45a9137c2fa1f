"""Repair priority: which terminals hurt the bank's VIP clients most, read from the alert store.

A part of :class:`~monitor.alerts.store.AlertStore` that only reads. A terminal's VIP
impact over a period counts the VIP failures the store recorded there whose outcome
class is the terminal's own (the caller passes them: ``rules/health.yaml``
``aggregate.classes``, by default technical, terminal and card — the host, the terminal
or its card reader failed, not the client's account or a fraud rule), leaving out the
failures of alerts that storm control linked to an **issuer** or **network** incident
(an outage elsewhere that every terminal saw is not this terminal's to repair).

Terminals rank by distinct VIP clients hurt, then VIP failures, then managers affected,
then terminal ID: ten clients failing once each weigh more than one client failing ten
times. Reads the ``alert_events_by_time`` index; a week of VIP failures is thousands of
rows, not millions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from monitor.alerts.store.connection import StoreConnection
from monitor.alerts.store.db import Row
from monitor.alerts.store.rows import parse_utc, utc_text

__all__ = ["ELSEWHERE_SCOPES", "ImpactQueries", "TerminalImpact"]

#: Incident scopes whose failures are not the terminal's own (an outage upstream).
ELSEWHERE_SCOPES: tuple[str, ...] = ("issuer", "network")


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalImpact:
    """One terminal's VIP impact over a period.

    Attributes:
        terminal_id: the terminal (ISO 8583 field 41).
        channel: ``ATM`` or ``POS`` (of its latest failure).
        merchant_id: the merchant (ISO 8583 field 42) of its latest failure, if any.
        clients: distinct VIP clients who failed there.
        failures: VIP failures there.
        managers: distinct relationship managers of those clients.
        outcomes: outcome class → failures, most first.
        last_failure_at: the latest of them (event time, UTC).
    """

    terminal_id: str
    channel: str
    merchant_id: str | None
    clients: int
    failures: int
    managers: int
    outcomes: tuple[tuple[str, int], ...]
    last_failure_at: datetime


class ImpactQueries(StoreConnection):
    """Terminals ranked by VIP impact, read from :class:`~monitor.alerts.store.AlertStore`."""

    def terminal_impact(self, *, since: datetime, until: datetime, classes: Sequence[str],
                        limit: int | None = None) -> list[TerminalImpact]:
        """Return the terminals with VIP failures of ``classes`` in ``[since, until)``, worst first.

        Args:
            since: the period's start (aware, inclusive, event time).
            until: the period's end (aware, exclusive).
            classes: the outcome classes that are a terminal's own (non-empty).
            limit: at most this many terminals (``None``: all).

        Returns:
            :class:`TerminalImpact` per terminal, ranked as the module says.

        Raises:
            ValueError: a naive time, no class, or a ``limit`` below 1.
        """
        if not classes:
            raise ValueError("terminal impact needs at least one outcome class")
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")
        wanted = sorted(set(classes))
        with self._lock:
            rows = self._conn.execute(
                "SELECT e.terminal_id, e.channel, e.merchant_id, e.occurred_at, e.outcome, "
                "a.customer_id, a.manager_id FROM alert_events e "
                "JOIN alerts a ON a.alert_id = e.alert_id "
                "LEFT JOIN incident_alerts ia ON ia.alert_id = e.alert_id "
                "LEFT JOIN incidents i ON i.incident_id = ia.incident_id "
                "WHERE e.occurred_at >= ? AND e.occurred_at < ? "
                f"AND e.outcome IN ({', '.join('?' * len(wanted))}) "
                f"AND (i.scope IS NULL OR i.scope NOT IN ({', '.join('?' * len(ELSEWHERE_SCOPES))}))",
                (utc_text(since), utc_text(until), *wanted, *ELSEWHERE_SCOPES)).fetchall()
        by_terminal: dict[str, list[Row]] = {}  # <terminal_id: its rows>
        for row in rows:
            by_terminal.setdefault(row["terminal_id"], []).append(row)
        ranked = sorted((_impact(terminal_id, found) for terminal_id, found in by_terminal.items()),
                        key=lambda t: (-t.clients, -t.failures, -t.managers, t.terminal_id))
        return ranked if limit is None else ranked[:limit]


def _impact(terminal_id: str, rows: list[Row]) -> TerminalImpact:
    latest = max(rows, key=lambda row: row["occurred_at"])
    outcomes = Counter(row["outcome"] for row in rows)
    return TerminalImpact(
        terminal_id=terminal_id, channel=latest["channel"],
        merchant_id=latest["merchant_id"],
        clients=len({row["customer_id"] for row in rows}),
        failures=len(rows),
        managers=len({row["manager_id"] for row in rows}),
        outcomes=tuple(sorted(outcomes.items(), key=lambda item: (-item[1], item[0]))),
        last_failure_at=parse_utc(latest["occurred_at"]))
