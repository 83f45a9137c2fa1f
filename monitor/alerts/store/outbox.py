"""The alert store's outbox: claiming due rows, leases, marking outcomes, the fallback.

A part of :class:`~monitor.alerts.store.AlertStore` (its connection, lock and
transactions come from :class:`~monitor.alerts.store.connection.StoreConnection`); the
policy (when to retry, when to tell the fallback, when to give up) is the delivery
worker's (:mod:`monitor.alerts.delivery.worker`). Each outcome that reaches a person
(``email``, ``webhook``, ``apprise:<n>``) moves the alert's state
(:mod:`monitor.alerts.store.outcomes`); a sink's never does. Putting failed rows back
is :mod:`monitor.alerts.store.resend`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from monitor.alerts.states import SYSTEM_ACTOR
from monitor.alerts.store.connection import StoreConnection, retried
from monitor.alerts.store.db import Database
from monitor.alerts.store.outcomes import after_failed, after_sent
from monitor.alerts.store.routes import RouteChoice
from monitor.alerts.store.rows import (
    clean_note,
    delivery_from_row,
    scrubbed,
    utc_text,
    write_history,
)
from monitor.domain import Delivery, Manager
from monitor.secrets import redact_urls

__all__ = ["OutboxQueries"]


# Longer than any send (the worker bounds a send to well under this), so a row claimed
# by a worker that crashed mid-send becomes due again after the lease.
_DEFAULT_LEASE_SECONDS: Final = 120.0


# Bounded so a huge exception text cannot bloat the outbox.
_MAX_ERROR_CHARS: Final = 2000


class OutboxQueries(StoreConnection):
    """The delivery outbox of :class:`~monitor.alerts.store.AlertStore`."""

    @retried
    def claim_due(
        self, now: datetime, limit: int = 50, *, lease_seconds: float = _DEFAULT_LEASE_SECONDS
    ) -> list[Delivery]:
        """Return pending deliveries due at ``now`` and lease them to the caller.

        A claimed row's ``next_attempt_at`` moves to exactly ``now + lease_seconds``,
        so another pass does not send it concurrently; if the caller crashes before
        marking it, the row becomes due again when the lease ends. A caller whose sends
        may outlast the lease extends it with :meth:`renew_leases`.

        Args:
            now: timezone-aware current time.
            limit: most rows to return, oldest due first.
            lease_seconds: how long the claim holds, in seconds.

        Returns:
            The claimed rows as they were before the claim, except ``first_attempt_at``:
            ``now`` for a row claimed for the first time (the start of its retry window).
        """
        lease_end = utc_text(now + timedelta(seconds=lease_seconds))
        with self._transaction() as conn:
            # PostgreSQL: rows another instance is claiming right now are skipped, not
            # waited for; once it commits, their next_attempt_at is past ``now``.
            rows = conn.execute(
                f"""SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?
                ORDER BY next_attempt_at, delivery_id LIMIT ?{conn.for_update_skip_locked}""",
                (utc_text(now), limit),
            ).fetchall()
            # The first claim starts the row's retry window (alerting.retry_for_seconds).
            conn.executemany(
                """UPDATE deliveries SET next_attempt_at = ?,
                    first_attempt_at = coalesce(first_attempt_at, ?) WHERE delivery_id = ?""",
                [(lease_end, utc_text(now), row["delivery_id"]) for row in rows],
            )
        claimed = [delivery_from_row(row) for row in rows]
        return [d if d.first_attempt_at else replace(d, first_attempt_at=now) for d in claimed]

    def renew_leases(self, leases: Mapping[int, datetime], until: datetime) -> list[int]:
        """Extend the leases a worker still holds; a lease someone else changed is left alone.

        A row is renewed only while it is pending and its ``next_attempt_at`` is still
        the lease end the caller wrote (compare-and-set): a row already marked (sent,
        retried, failed) or claimed again by another worker after the lease ended
        keeps what it has.

        Args:
            leases: ``delivery_id`` → the lease end the caller holds (what
                :meth:`claim_due` or the previous renewal wrote).
            until: the new lease end (aware).

        Returns:
            The delivery IDs whose lease now ends at ``until``.
        """
        end = utc_text(until)
        renewed: list[int] = []
        with self._transaction() as conn:
            for delivery_id, held in leases.items():
                row = conn.execute(
                    """UPDATE deliveries SET next_attempt_at = ? WHERE delivery_id = ?
                    AND status = 'pending' AND next_attempt_at = ?""",
                    (end, delivery_id, utc_text(held)),
                )
                if row.rowcount == 1:
                    renewed.append(delivery_id)
        return renewed

    def mark_sent(self, delivery_id: int, at: datetime) -> bool:
        """Record that the channel accepted a pending delivery; ``False`` if not pending.

        When the channel reaches a person (``email``, ``webhook``, ``apprise:<n>``), the
        alert's history gets a ``notified`` row (who: the recipient, via: the channel)
        and an ``open`` or ``failed`` alert becomes ``notified``. A sink (``console``,
        ``jsonl``, ``alertmanager``) that accepted it told nobody: the state stays.
        """
        return self._mark(
            "status = 'sent', attempts = attempts + 1, sent_at = ?, updated_at = ?",
            (utc_text(at), utc_text(at)), delivery_id, after=after_sent,
        )

    @retried
    def mark_many_sent(self, sent: Mapping[int, datetime]) -> set[int]:
        """:meth:`mark_sent` for several rows in one transaction (one durable commit).

        Args:
            sent: ``delivery_id`` → when its channel accepted it (aware).

        Returns:
            The delivery IDs that were pending and are now ``sent`` (the others were
            marked meanwhile and are left as they are).
        """
        marked: set[int] = set()
        if not sent:
            return marked
        with self._transaction() as conn:
            # The alerts' names first, in sorted order, as record() takes them: a group of
            # marks and a batch being recorded by another instance wait, never deadlock.
            ids = sorted(sent)
            alert_of = {row["delivery_id"]: row["alert_id"] for row in conn.execute(
                f"SELECT delivery_id, alert_id FROM deliveries WHERE delivery_id IN "
                f"({', '.join('?' * len(ids))})", ids).fetchall()}
            conn.lock_keys(f"alert:{alert_id}" for alert_id in alert_of.values())
            for delivery_id in sorted(ids, key=lambda d: (alert_of.get(d, ""), d)):
                at = sent[delivery_id]
                stamp = utc_text(at)
                row = conn.execute(
                    """UPDATE deliveries SET status = 'sent', attempts = attempts + 1, sent_at = ?,
                    updated_at = ? WHERE delivery_id = ? AND status = 'pending'""",
                    (stamp, stamp, delivery_id))
                if row.rowcount == 1:
                    after_sent(conn, delivery_id)
                    marked.add(delivery_id)
        return marked

    def mark_retry(self, delivery_id: int, error: str, next_attempt_at: datetime) -> bool:
        """Record a failed attempt and when to try again; ``False`` if not pending."""
        return self._mark(
            "attempts = attempts + 1, last_error = ?, next_attempt_at = ?, updated_at = ?",
            (_error_text(error), utc_text(next_attempt_at), utc_text(datetime.now(UTC))), delivery_id,
        )

    def mark_failed(self, delivery_id: int, error: str) -> bool:
        """Record the last failed attempt and give up; ``False`` if not pending.

        When every delivery of an ``open`` alert to a person has failed (sinks do not
        count), the alert becomes ``failed`` (a history row carries the last error);
        an incident notice or a summary whose deliveries all failed does that to the
        ``open`` alerts it carries. ``cardmon alerts resend`` (:meth:`resend`) puts
        failed rows back in the outbox.
        """
        return self._mark(
            "status = 'failed', attempts = attempts + 1, last_error = ?, updated_at = ?",
            (_error_text(error), utc_text(datetime.now(UTC))), delivery_id, after=after_failed,
        )

    def mark_fallback(
        self,
        delivery_id: int,
        at: datetime,
        note: str,
        *,
        backup: Manager | None = None,
        route: RouteChoice | None = None,
        done: bool = True,
    ) -> int | None:
        """Record that the fallback was told about a pending delivery that is not getting through.

        In one transaction: with a ``backup``, enqueue the alert to them on the routes
        ``route`` chooses for them at its severity, due at once (unique per alert, channel and recipient:
        calling again adds nothing); when ``done``, stamp the row's ``fallback_at`` (the
        fallback is told once per row); and, when either changed something, write a
        ``fallback`` history row on the alert (actor ``cardmon``, via ``fallback``,
        ``note``). The row itself stays pending and keeps its retries.

        Args:
            delivery_id: the row that is not getting through.
            at: when (aware).
            note: what was done (whom it could not reach, since when, who was told).
            backup: the manager to tell as well (the recipient's backup), or ``None``.
            route: the caller's decision for the backup: their routes at the alert's
                severity (the recipient it returns is ignored: the backup is told);
                required with a ``backup``.
            done: every part of the fallback worked; ``False`` leaves ``fallback_at``
                unset, so the next failed attempt tells it again.

        Returns:
            Outbox rows added for the backup, or ``None`` when the row is no longer
            pending or its fallback was already told (nothing changed).
        """
        if backup is not None and route is None:
            raise ValueError("telling a backup needs the route choice for them")
        return self._fallback(delivery_id, utc_text(at), clean_note(note) or "", backup, route, done)

    @retried
    def _fallback(self, delivery_id: int, stamp: str, note: str, backup: Manager | None,
                  route: RouteChoice | None, done: bool) -> int | None:
        with self._transaction() as conn:
            row = conn.execute(
                f"""SELECT d.alert_id, d.fallback_at, d.status FROM deliveries d
                WHERE d.delivery_id = ?{conn.for_update}""", (delivery_id,)).fetchone()
            if row is None or row["status"] != "pending" or row["fallback_at"] is not None:
                return None
            if done:
                conn.execute("UPDATE deliveries SET fallback_at = ? WHERE delivery_id = ?",
                             (stamp, delivery_id))
            alert = conn.execute(
                f"SELECT state, severity, manager_id FROM alerts WHERE alert_id = ?{conn.for_update}",
                (row["alert_id"],)).fetchone()
            if alert is None:  # a digest, notice or summary: no alert history, no backup
                return 0
            added = 0
            if backup is not None and route is not None and backup.manager_id != alert["manager_id"]:
                added = sum(conn.execute(
                    """INSERT INTO deliveries
                        (alert_id, channel, status, attempts, next_attempt_at, created_at,
                         updated_at, recipient_id, recipient_name, recipient_email,
                         recipient_webhook_url, recipient_timezone)
                    VALUES (?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                    (row["alert_id"], channel, stamp, stamp, stamp, backup.manager_id,
                     scrubbed(backup.name), backup.email, backup.webhook_url, backup.timezone),
                ).rowcount for channel in route(backup, alert["severity"])[1])
            if done or added:
                write_history(conn, row["alert_id"], "fallback", alert["state"], alert["state"],
                               SYSTEM_ACTOR, "fallback", note, stamp)
            return added

    @retried
    def _mark(
        self,
        assignments: str,
        values: tuple[Any, ...],
        delivery_id: int,
        *,
        after: Callable[[Database, int], None] | None = None,
    ) -> bool:
        with self._transaction() as conn:
            row = conn.execute(
                f"UPDATE deliveries SET {assignments} WHERE delivery_id = ? AND status = 'pending'",
                (*values, delivery_id),
            )
            if row.rowcount == 1 and after is not None:
                after(conn, delivery_id)
        return row.rowcount == 1

    def pending_count(self) -> int:
        """Deliveries still waiting in the outbox (first try or a retry)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT count(*) FROM deliveries WHERE status = 'pending'").fetchone()
        return int(row[0])

    def failed_deliveries(self) -> int:
        """Outbox rows that failed for good and were not re-sent (for a metric)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT count(*) FROM deliveries WHERE status = 'failed'").fetchone()
        return int(row[0])


def _error_text(error: str) -> str:
    # The API serves it and the fallback mails it: no PAN, no URL (credentials, tokens).
    return redact_urls(scrubbed(error))[:_MAX_ERROR_CHARS]
