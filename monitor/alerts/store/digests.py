"""The alert store's daily digests: claiming one per manager and local day, reading them back.

A part of :class:`~monitor.alerts.store.AlertStore`; when a digest is claimed is
:func:`monitor.alerts.jobs.digests_due`, what goes in it :mod:`monitor.alerts.messages.digest`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from monitor.alerts.states import AlertState
from monitor.alerts.store.connection import StoreConnection, retried
from monitor.alerts.store.rows import alert_from_row, parse_utc, scrubbed, utc_text
from monitor.domain import Alert, Manager
from monitor.ids import digest_id_for

__all__ = ["DigestQueries", "DigestRecord"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestRecord:
    """A claimed daily digest (see :meth:`AlertStore.claim_digest`).

    Attributes:
        digest_id: ``dg-`` + 20 base32 characters, derived from manager and local date.
        manager_id: whose digest it is.
        local_date: the manager's local day it belongs to.
        timezone: the manager's IANA zone when it was claimed.
        period_start: alerts recorded at or after this instant are in it (UTC).
        period_end: ... and before this one (UTC): the claim time.
        alert_count: alerts of the manager's clients recorded in the period.
        created_at: when it was claimed (UTC).
    """

    digest_id: str
    manager_id: str
    local_date: date
    timezone: str
    period_start: datetime
    period_end: datetime
    alert_count: int
    created_at: datetime






class DigestQueries(StoreConnection):
    """The daily digests of :class:`~monitor.alerts.store.AlertStore`."""

    # -- daily digests (monitor/alerts/messages/digest.py) ------------------------------------

    @retried
    def claim_digest(
        self,
        manager: Manager,
        local_date: date,
        *,
        at: datetime,
        channels: Sequence[str] = ("email", "webhook"),
        first_period_seconds: int = 86_400,
    ) -> DigestRecord | None:
        """Claim a manager's digest of one local day and enqueue it, exactly once.

        In one write transaction: insert the ``(manager_id, local_date)`` row (unique,
        ``ON CONFLICT DO NOTHING``: a second instance, or a second pass, gets ``None``;
        on PostgreSQL it waits for the first one's commit to know), fix its
        period — from the end of the manager's previous digest (or
        ``first_period_seconds`` before ``at`` for the first one) to ``at`` — and, when
        the period holds alerts, enqueue one outbox row for it: ``email`` if the
        manager has an address and e-mail is configured, else ``webhook``. The
        delivery worker sends it like an alert (retries, fallback, metrics).

        Args:
            manager: the manager (contact details are kept on the outbox row).
            local_date: the manager's local day the digest belongs to.
            at: the time of the claim (aware); the period ends here.
            channels: the manager channels that are configured.
            first_period_seconds: length of a manager's first period, in seconds.

        Returns:
            The claimed :class:`DigestRecord`, or ``None`` when it was already claimed.
        """
        stamp = utc_text(at)
        digest_id = digest_id_for(manager.manager_id, local_date)
        with self._transaction() as conn:
            previous = conn.execute(
                "SELECT max(period_end) FROM digests WHERE manager_id = ?", (manager.manager_id,)
            ).fetchone()[0]
            start = min(previous or utc_text(at - timedelta(seconds=first_period_seconds)), stamp)
            count = conn.execute(
                "SELECT count(*) FROM alerts WHERE manager_id = ? AND created_at >= ? AND created_at < ?",
                (manager.manager_id, start, stamp),
            ).fetchone()[0]
            claimed = conn.execute(
                """INSERT INTO digests (digest_id, manager_id, local_date, timezone,
                    period_start, period_end, alert_count, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT DO NOTHING""",
                (digest_id, manager.manager_id, local_date.isoformat(), manager.timezone, start,
                 stamp, count, stamp),
            ).rowcount
            if not claimed:
                return None
            channel = next((name for name, wanted in (("email", manager.email),
                                                      ("webhook", manager.webhook_url))
                            if wanted and name in channels), None)
            if count and channel is not None:
                conn.execute(
                    """INSERT INTO deliveries
                        (alert_id, channel, status, attempts, next_attempt_at, created_at,
                         updated_at, recipient_id, recipient_name, recipient_email,
                         recipient_webhook_url, recipient_timezone)
                    VALUES (?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (digest_id, channel, stamp, stamp, stamp, manager.manager_id,
                     scrubbed(manager.name), manager.email, manager.webhook_url,
                     manager.timezone),
                )
        return DigestRecord(digest_id=digest_id, manager_id=manager.manager_id,
                            local_date=local_date, timezone=manager.timezone,
                            period_start=parse_utc(start), period_end=at.astimezone(UTC),
                            alert_count=count, created_at=at.astimezone(UTC))

    def digest(self, digest_id: str) -> DigestRecord | None:
        """Return a claimed digest, ``None`` if unknown."""
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM digests WHERE digest_id = ?", (digest_id,)).fetchone()
        if row is None:
            return None
        return DigestRecord(digest_id=row["digest_id"], manager_id=row["manager_id"],
                            local_date=date.fromisoformat(row["local_date"]),
                            timezone=row["timezone"], period_start=parse_utc(row["period_start"]),
                            period_end=parse_utc(row["period_end"]), alert_count=row["alert_count"],
                            created_at=parse_utc(row["created_at"]))

    def digests_of(self, manager_id: str) -> list[DigestRecord]:
        """Return a manager's claimed digests, oldest first."""
        with self._lock:
            ids = [row[0] for row in self._conn.execute(
                "SELECT digest_id FROM digests WHERE manager_id = ? ORDER BY period_end",
                (manager_id,)).fetchall()]
        return [record for record in map(self.digest, ids) if record is not None]

    def manager_alerts(
        self, manager_id: str, start: datetime, end: datetime
    ) -> list[tuple[Alert, AlertState]]:
        """Alerts of a manager's clients recorded in ``[start, end)``, oldest first, with their state.

        The alerts carry no deliveries (``status`` reads ``unrouted``); the state is
        the lifecycle state now.
        """
        with self._lock:
            rows = self._conn.execute(
                """SELECT * FROM alerts WHERE manager_id = ? AND created_at >= ? AND created_at < ?
                ORDER BY created_at, alert_id""",
                (manager_id, utc_text(start), utc_text(end)),
            ).fetchall()
        return [(alert_from_row(row, ()), row["state"]) for row in rows]
