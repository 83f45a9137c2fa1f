"""The alert store's outbox: claiming due rows, leases, marking outcomes, the fallback, re-sending.

A mixin of :class:`~monitor.alerts.store.AlertStore` (its connection, lock and
transactions come from there); the policy (when to retry, when to tell the fallback,
when to give up) is the delivery worker's (:mod:`monitor.alerts.delivery.worker`). Each
outcome that reaches a person (``email``, ``webhook``, ``apprise:<n>``) moves the
alert's state; a sink's never does (:mod:`monitor.alerts.lifecycle`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from monitor.alerts.routing import PERSON_CHANNEL_SQL, channels_for, is_person_channel
from monitor.alerts.states import SYSTEM_ACTOR, AlertNotFoundError, AlertState
from monitor.alerts.store.db import Database
from monitor.alerts.store.lifecycle import _actor, _via
from monitor.alerts.store.rows import (
    StoreConnection,
    _clean_text,
    _delivery,
    _note,
    _retried,
    _ts,
    _write_history,
)
from monitor.alerts.store.storm import _after_notice_failed, _after_notice_sent
from monitor.domain import Delivery, Manager
from monitor.secrets import redact_urls

__all__ = ["OutboxQueries", "Resend"]

# Longer than any send (the worker bounds a send to well under this), so a row claimed
# by a worker that crashed mid-send becomes due again after the lease.
_DEFAULT_LEASE_SECONDS: Final = 120.0
# Bounded so a huge exception text cannot bloat the outbox.
_MAX_ERROR_CHARS: Final = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class Resend:
    """What :meth:`AlertStore.resend` put back in the outbox.

    Attributes:
        deliveries: failed outbox rows made pending again (due at once).
        alert_ids: alerts whose history got a ``resent`` row (a ``failed`` one is
            ``open`` again), in alert ID order.
        message_ids: the IDs the re-queued rows belong to (alerts, incident notices,
            summaries, digests), in ID order.
    """

    deliveries: int
    alert_ids: tuple[str, ...]
    message_ids: tuple[str, ...]


class OutboxQueries(StoreConnection):
    """The delivery outbox of :class:`AlertStore`."""

    # -- the outbox ------------------------------------------------------------------

    @_retried
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
        lease_end = _ts(now + timedelta(seconds=lease_seconds))
        with self._lock, self._transaction() as conn:
            # PostgreSQL: rows another instance is claiming right now are skipped, not
            # waited for; once it commits, their next_attempt_at is past ``now``.
            rows = conn.execute(
                f"""SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?
                ORDER BY next_attempt_at, delivery_id LIMIT ?{conn.for_update_skip_locked}""",
                (_ts(now), limit),
            ).fetchall()
            # The first claim starts the row's retry window (alerting.retry_for_seconds).
            conn.executemany(
                """UPDATE deliveries SET next_attempt_at = ?,
                    first_attempt_at = coalesce(first_attempt_at, ?) WHERE delivery_id = ?""",
                [(lease_end, _ts(now), row["delivery_id"]) for row in rows],
            )
        claimed = [_delivery(row) for row in rows]
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
        end = _ts(until)
        renewed: list[int] = []
        with self._lock, self._transaction() as conn:
            for delivery_id, held in leases.items():
                row = conn.execute(
                    """UPDATE deliveries SET next_attempt_at = ? WHERE delivery_id = ?
                    AND status = 'pending' AND next_attempt_at = ?""",
                    (end, delivery_id, _ts(held)),
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
            (_ts(at), _ts(at)), delivery_id, after=_after_sent,
        )

    def mark_retry(self, delivery_id: int, error: str, next_attempt_at: datetime) -> bool:
        """Record a failed attempt and when to try again; ``False`` if not pending."""
        return self._mark(
            "attempts = attempts + 1, last_error = ?, next_attempt_at = ?, updated_at = ?",
            (_error_text(error), _ts(next_attempt_at), _ts(datetime.now(UTC))), delivery_id,
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
            (_error_text(error), _ts(datetime.now(UTC))), delivery_id, after=_after_failed,
        )

    def mark_fallback(
        self,
        delivery_id: int,
        at: datetime,
        note: str,
        *,
        backup: Manager | None = None,
        channels: Sequence[str] = ("email", "webhook"),
        done: bool = True,
    ) -> int | None:
        """Record that the fallback was told about a pending delivery that is not getting through.

        In one transaction: with a ``backup``, enqueue the alert to them on their
        channels for its severity, due at once (unique per alert, channel and recipient:
        calling again adds nothing); when ``done``, stamp the row's ``fallback_at`` (the
        fallback is told once per row); and, when either changed something, write a
        ``fallback`` history row on the alert (actor ``cardmon``, via ``fallback``,
        ``note``). The row itself stays pending and keeps its retries.

        Args:
            delivery_id: the row that is not getting through.
            at: when (aware).
            note: what was done (whom it could not reach, since when, who was told).
            backup: the manager to tell as well (the recipient's backup), or ``None``.
            channels: the manager channels that are configured.
            done: every part of the fallback worked; ``False`` leaves ``fallback_at``
                unset, so the next failed attempt tells it again.

        Returns:
            Outbox rows added for the backup, or ``None`` when the row is no longer
            pending or its fallback was already told (nothing changed).
        """
        return self._fallback(delivery_id, _ts(at), _note(note) or "", backup, tuple(channels), done)

    @_retried
    def _fallback(self, delivery_id: int, stamp: str, note: str, backup: Manager | None,
                  channels: tuple[str, ...], done: bool) -> int | None:
        with self._lock, self._transaction() as conn:
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
            if backup is not None and backup.manager_id != alert["manager_id"]:
                added = sum(conn.execute(
                    """INSERT INTO deliveries
                        (alert_id, channel, status, attempts, next_attempt_at, created_at,
                         updated_at, recipient_id, recipient_name, recipient_email,
                         recipient_webhook_url, recipient_timezone)
                    VALUES (?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                    (row["alert_id"], route.channel, stamp, stamp, stamp, backup.manager_id,
                     _clean_text(backup.name), backup.email, backup.webhook_url, backup.timezone),
                ).rowcount for route in channels_for(backup, alert["severity"], channels))
            if done or added:
                _write_history(conn, row["alert_id"], "fallback", alert["state"], alert["state"],
                               SYSTEM_ACTOR, "fallback", note, stamp)
            return added

    @_retried
    def _mark(
        self,
        assignments: str,
        values: tuple[Any, ...],
        delivery_id: int,
        *,
        after: Callable[[Database, int], None] | None = None,
    ) -> bool:
        with self._lock, self._transaction() as conn:
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

    @_retried
    def resend(
        self, message_id: str | None, *, by: str, via: str, at: datetime | None = None
    ) -> Resend:
        """Put failed deliveries back in the outbox, due at once, and record who did it.

        The rows of ``message_id`` (an alert, and the incident notices and rate-cap
        summary that carry it; or a digest, notice or summary ID), or with ``None``
        every failed row of the store, become ``pending`` with a new retry window
        (attempts from 0, the fallback told again if they keep failing); each keeps its
        last error and records ``resent_by``/``resent_at``. Each alert concerned gets a
        ``resent`` history row (``by``, ``via``, which channels); a ``failed`` alert is
        ``open`` again. Nothing failed: nothing changes.

        Args:
            message_id: an alert (``al-``), notice (``ic-``), summary or digest (``dg-``)
                ID; ``None`` for every failed delivery (``--all-failed``).
            by: who (operator name or manager ID; 1–200 characters, PAN-scrubbed).
            via: the channel it came through (``cli``, ``api``).
            at: when (aware; UTC now if ``None``).

        Returns:
            The :class:`Resend`.

        Raises:
            AlertNotFoundError: ``message_id`` names nothing in the store.
            ValueError: ``by`` or ``via`` is empty or too long.
        """
        actor, channel = _actor(by), _via(via)
        stamp = _ts(at or datetime.now(UTC))
        with self._lock, self._transaction() as conn:
            if message_id is None:
                rows = conn.execute(
                    f"""SELECT delivery_id, alert_id, channel FROM deliveries WHERE status = 'failed'
                    ORDER BY delivery_id{conn.for_update}""").fetchall()
            else:
                if not _message_exists(conn, message_id):
                    raise AlertNotFoundError(f"no alert, notice, summary or digest {message_id}")
                rows = conn.execute(
                    f"""SELECT delivery_id, alert_id, channel FROM deliveries WHERE status = 'failed'
                    AND (alert_id = ? OR alert_id IN (
                        SELECT n.notice_id FROM incident_notices n JOIN incident_alerts l
                          ON l.incident_id = n.incident_id AND l.manager_id = n.manager_id
                        WHERE l.alert_id = ? AND n.kind IN ('opened', 'update'))
                      OR alert_id IN (SELECT summary_id FROM alerts WHERE alert_id = ?))
                    ORDER BY delivery_id{conn.for_update}""",
                    (message_id, message_id, message_id)).fetchall()
            if not rows:
                return Resend(deliveries=0, alert_ids=(), message_ids=())
            conn.executemany(
                """UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?,
                    first_attempt_at = NULL, fallback_at = NULL, resent_by = ?, resent_at = ?,
                    updated_at = ? WHERE delivery_id = ? AND status = 'failed'""",
                [(stamp, actor, stamp, stamp, row["delivery_id"]) for row in rows])
            concerned: dict[str, list[str]] = {}  # <alert_id: re-queued channels>
            for row in rows:
                for alert_id in _alerts_of_message(conn, row["alert_id"]):
                    via_text = (row["channel"] if alert_id == row["alert_id"]
                                else f"{row['channel']} of {row['alert_id']}")
                    concerned.setdefault(alert_id, []).append(via_text)
            for alert_id in sorted(concerned):
                state = conn.execute(f"SELECT state FROM alerts WHERE alert_id = ?{conn.for_update}",
                                     (alert_id,)).fetchone()["state"]
                target: AlertState = "open" if state == "failed" else state
                if target != state:
                    conn.execute("UPDATE alerts SET state = ? WHERE alert_id = ?", (target, alert_id))
                _write_history(conn, alert_id, "resent", state, target, actor, channel,
                               _note(f"re-queued failed deliveries: {', '.join(concerned[alert_id])}"),
                               stamp)
        return Resend(deliveries=len(rows), alert_ids=tuple(sorted(concerned)),
                      message_ids=tuple(sorted({row["alert_id"] for row in rows})))

    def failed_deliveries(self) -> int:
        """Outbox rows that failed for good and were not re-sent (for a metric)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT count(*) FROM deliveries WHERE status = 'failed'").fetchone()
        return int(row[0])


def _error_text(error: str) -> str:
    # The API serves it and the fallback mails it: no PAN, no URL (credentials, tokens).
    return redact_urls(_clean_text(error))[:_MAX_ERROR_CHARS]


def _after_sent(conn: Database, delivery_id: int) -> None:
    row = conn.execute(
        # Locks the alert (PostgreSQL) before its state is read: an acknowledgement by
        # another instance in between is never overwritten.
        f"""SELECT d.alert_id, d.channel, d.recipient_id, d.sent_at, a.state, a.manager_id
        FROM deliveries d JOIN alerts a ON a.alert_id = d.alert_id
        WHERE d.delivery_id = ?{conn.for_update}""",
        (delivery_id,),
    ).fetchone()
    if row is None:  # a digest's or an incident notice's row: no alert of its own
        _after_notice_sent(conn, delivery_id)
        return
    if not is_person_channel(row["channel"]):
        return  # a sink recorded it: nobody was told, the state stays
    state: AlertState = row["state"]
    new_state: AlertState = "notified" if state in ("open", "failed") else state
    if new_state != state:
        conn.execute("UPDATE alerts SET state = ? WHERE alert_id = ?", (new_state, row["alert_id"]))
    _write_history(conn, row["alert_id"], "notified", state, new_state,
                   row["recipient_id"] or row["manager_id"], row["channel"], None, row["sent_at"])


def _after_failed(conn: Database, delivery_id: int) -> None:
    row = conn.execute(
        # Locked as in _after_sent; the count below then sees every other delivery of
        # the alert that another instance marked before it released the alert.
        f"""SELECT d.alert_id, d.channel, d.last_error, d.updated_at, a.state
        FROM deliveries d JOIN alerts a ON a.alert_id = d.alert_id
        WHERE d.delivery_id = ?{conn.for_update}""",
        (delivery_id,),
    ).fetchone()
    if row is None:  # a digest's, notice's or summary's row (no alert of its own)
        _after_notice_failed(conn, delivery_id)
        return
    if row["state"] != "open" or not is_person_channel(row["channel"]):
        return  # a sink that failed tells nothing about whether a person was told
    others = conn.execute(
        f"""SELECT count(*) FROM deliveries d WHERE d.alert_id = ? AND d.status != 'failed'
        AND {PERSON_CHANNEL_SQL}""",
        (row["alert_id"],),
    ).fetchone()[0]
    if others:
        return
    conn.execute("UPDATE alerts SET state = 'failed' WHERE alert_id = ?", (row["alert_id"],))
    _write_history(conn, row["alert_id"], "failed", "open", "failed", SYSTEM_ACTOR, row["channel"],
                   row["last_error"], row["updated_at"])


def _message_exists(conn: Database, message_id: str) -> bool:
    return conn.execute(
        """SELECT EXISTS (SELECT 1 FROM alerts WHERE alert_id = ?)
            OR EXISTS (SELECT 1 FROM incident_notices WHERE notice_id = ?)
            OR EXISTS (SELECT 1 FROM summaries WHERE summary_id = ?)
            OR EXISTS (SELECT 1 FROM digests WHERE digest_id = ?)""",
        (message_id,) * 4).fetchone()[0] in (1, True)


def _alerts_of_message(conn: Database, message_id: str) -> list[str]:
    # The alert itself, or the alerts an opened/update notice or a summary carries that
    # its failure left failed (a digest, resolved or escalation notice carries none).
    if conn.execute("SELECT 1 FROM alerts WHERE alert_id = ?", (message_id,)).fetchone() is not None:
        return [message_id]
    rows = conn.execute(
        """SELECT a.alert_id FROM alerts a WHERE a.summary_id = ? AND a.state = 'failed'
        UNION SELECT a.alert_id FROM incident_notices n
            JOIN incident_alerts l ON l.incident_id = n.incident_id AND l.manager_id = n.manager_id
            JOIN alerts a ON a.alert_id = l.alert_id
        WHERE n.notice_id = ? AND n.kind IN ('opened', 'update') AND a.state = 'failed'
        ORDER BY 1""", (message_id, message_id)).fetchall()
    return [row[0] for row in rows]
