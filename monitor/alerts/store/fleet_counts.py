"""Shared incident counts of several instances in one consumer group, in the PostgreSQL store.

With ``alerting.scale_out`` on, each instance writes, per partition it reads, the
partial counts of each closed bucket and its event-time progress; one instance at
a time (the *judge*, holder of a lease row) reads every partition's partials of the
buckets all partitions have passed and judges them (:mod:`monitor.pipeline.fleet`
drives both; ``docs/scale-out.md`` says why and what it costs). Tables
(:data:`~monitor.alerts.store.schema_pg.FLEET_SCHEMA`), per topic:

- ``fleet_progress``: one row per partition: latest event time read, caught up or
  not, the last bucket whose partials are written (``flushed_through``), who wrote
  it and when it last progressed (database clock);
- ``fleet_partials``: per ``(bucket, partition)``: every key's transactions,
  outage failures, earliest/latest failure, failing cards and terminals, merchant,
  region (what :class:`~monitor.incidents.buckets.BucketCounts` aggregates), as one
  compressed Arrow IPC frame written by the caller (one row per bucket and partition,
  not per key: one insert whatever the number of keys);
- ``fleet_vips``: the VIP failures of outage classes, per event ID, with their keys;
- ``fleet_judge``: the judge's lease and the last bucket whose changes are stored
  (``judged_through``).

**Idempotent writes.** A partition's buckets are written in order, in one
transaction with its progress row locked: only buckets after its
``flushed_through`` are inserted, then ``flushed_through`` moves on. A replay after
a crash or a rebalance (the same events read again, by this instance or another)
finds the buckets written and writes nothing again: a partition's partial for a
bucket is written once. VIP rows are keyed by event ID (``ON CONFLICT DO NOTHING``).

Every method opens a short transaction on its own connection (not the alert store's),
is synchronous (call it through :func:`asyncio.to_thread`) and raises the store's
errors (:func:`~monitor.alerts.store.db.is_transient` classifies them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.alerts.store.db import Database
from monitor.alerts.store.postgres import PostgresDatabase
from monitor.alerts.store.schema_pg import FLEET_LOCK, FLEET_SCHEMA
from monitor.config import PostgresSettings

__all__ = ["FleetClaim", "FleetCounts", "LeaseLost", "PartialRow", "VipRow"]

#: One partition's partials of one bucket: (bucket, number of keys, the frame's bytes).
PartialRow = tuple[int, int, bytes]
#: One VIP failure of an outage class: (event ID, bucket, µs, its key per scope in the
#: rules' scope order, ``None`` where it has none).
VipRow = tuple[str, int, int, list[str | None]]


class LeaseLost(Exception):
    """The judge's lease is another instance's now (or the buckets were stored by another): permanent for this round.

    Raised by :meth:`FleetCounts.advance` inside the transaction that stores a round's
    changes, so nothing of that round is written; the new judge judges those buckets.
    """


@dataclass(frozen=True, slots=True)
class FleetClaim:
    """What the judge got for one round (see :meth:`FleetCounts.claim`).

    Attributes:
        previous_holder: who held the lease before this round (``None``: nobody yet).
        judged_before: the last bucket judged before this round (``None``: none yet).
        closed: the last bucket every partition has passed (``None``: none yet); the
            round judges the buckets after ``judged_before`` up to it.
        partials: every partition's partial frames (bytes) of those buckets.
        vips: the VIP failures of those buckets.
    """

    previous_holder: str | None
    judged_before: int | None
    closed: int | None
    partials: list[bytes] = field(default_factory=list)
    vips: list[VipRow] = field(default_factory=list)


class FleetCounts:
    """The shared counts of one topic in the PostgreSQL store (see the module docstring).

    Args:
        url: the PostgreSQL store's URL (``alerting.store_url``).
        topic: the transactions topic the partitions belong to.
        postgres: the connection's timeouts and keepalives.

    Raises:
        StoreUnavailable: the server cannot be reached.
    """

    def __init__(self, url: str, topic: str, postgres: PostgresSettings | None = None) -> None:
        self.topic = topic
        self._db: Database = PostgresDatabase(url, postgres)
        with self._db.transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(?)", (FLEET_LOCK,))
            for statement in FLEET_SCHEMA:
                db.execute(statement)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __repr__(self) -> str:
        return f"FleetCounts(topic={self.topic!r})"

    # -- writers: every instance, for the partitions it reads ---------------------------

    def leader_us(self) -> int | None:
        """The latest event time read from any partition of the topic (µs), ``None`` if none."""
        row = self._db.execute("SELECT max(latest_us) AS leader FROM fleet_progress WHERE topic = ?",
                               (self.topic,)).fetchone()
        return None if row is None or row["leader"] is None else int(row["leader"])

    def open_terminal_incidents(self) -> set[str]:
        """Terminal IDs with an open incident (their buckets without failures still count)."""
        rows = self._db.execute(
            "SELECT scope_key FROM incidents WHERE scope = 'terminal' AND ended_at IS NULL").fetchall()
        return {row["scope_key"] for row in rows}

    def flushed_through(self, partitions: Sequence[int]) -> dict[int, int | None]:
        """The last bucket written of each of ``partitions`` that has a row."""
        rows = self._db.execute(
            "SELECT partition, flushed_through FROM fleet_progress WHERE topic = ? AND partition = ANY(?)",
            (self.topic, list(partitions))).fetchall()
        return {int(row["partition"]): row["flushed_through"] for row in rows}

    def flush(self, partition: int, *, partitions: int, owner: str, latest_us: int | None,
              caught_up: bool, through: int | None, partials: Sequence[PartialRow],
              vips: Sequence[VipRow]) -> int | None:
        """Write one partition's progress and its partials up to bucket ``through``, once.

        Args:
            partition: the partition.
            partitions: how many partitions the topic has (as this instance knows it).
            owner: the writing instance (for the record).
            latest_us: the latest event time read from it (µs), ``None`` if none yet.
            caught_up: it was read to its end.
            through: the last bucket whose partials are complete (``None``: none yet).
            partials: its partial frames per bucket; those of buckets already written are skipped.
            vips: its VIP failures of outage classes; the same rule.

        Returns:
            The partition's ``flushed_through`` after the write.
        """
        with self._db.transaction() as db:
            db.execute(
                """INSERT INTO fleet_progress (topic, partition, partitions, latest_us, caught_up, owner)
                VALUES (?, ?, ?, NULL, FALSE, ?) ON CONFLICT DO NOTHING""",
                (self.topic, partition, partitions, owner))
            row = db.execute(
                "SELECT flushed_through, latest_us FROM fleet_progress WHERE topic = ? AND partition = ?"
                + db.for_update, (self.topic, partition)).fetchone()
            before = row["flushed_through"]
            moved = through is not None and (before is None or through > before)
            if through is not None and moved:
                fresh = [p for p in partials if (before is None or p[0] > before) and p[0] <= through]
                db.executemany(
                    """INSERT INTO fleet_partials (topic, bucket, partition, keys, frame)
                    VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                    [(self.topic, bucket, partition, keys, frame) for bucket, keys, frame in fresh])
                db.executemany(
                    """INSERT INTO fleet_vips (topic, event_id, bucket, partition, at_us, scope_keys)
                    VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                    [(self.topic, event_id, bucket, partition, at_us, keys)
                     for event_id, bucket, at_us, keys in vips
                     if (before is None or bucket > before) and bucket <= through])
            progressed = caught_up or (latest_us is not None
                                       and (row["latest_us"] is None or latest_us > row["latest_us"]))
            db.execute(
                """UPDATE fleet_progress SET partitions = ?, owner = ?, caught_up = ?,
                    latest_us = CASE WHEN latest_us IS NULL OR ? > latest_us THEN ? ELSE latest_us END,
                    flushed_through = ?,
                    progressed_at = CASE WHEN ? THEN now() ELSE progressed_at END,
                    updated_at = now()
                WHERE topic = ? AND partition = ?""",
                (partitions, owner, caught_up, latest_us, latest_us, through if moved else before,
                 progressed, self.topic, partition))
        return through if moved else before

    # -- the judge: one instance at a time -------------------------------------------------

    def claim(self, holder: str, *, lease_seconds: float, stalled_seconds: float,
              keep_buckets: int) -> FleetClaim | None:
        """Take (or renew) the judge's lease and the work of one round; ``None``: another instance judges.

        The lease is one row locked for the transaction: its holder keeps it by
        renewing it every round; when the holder stops renewing (it died, it lost the
        database) for ``lease_seconds``, the next instance to ask takes over. The round
        covers the buckets after the last judged up to the last bucket *every*
        partition has written (its ``flushed_through``): a partition that has not
        progressed for ``stalled_seconds`` (not caught up) holds nothing back, nor
        does a partition missing from ``fleet_progress`` once the first row is that
        old; a partition without a written bucket holds everything back. The judged
        bucket does **not** move here: the judge moves it with :meth:`advance` in the
        transaction that stores the round's changes, so buckets count as judged only
        once their changes are stored (a judge that dies or loses its lease first
        leaves them to the next judge, which judges them again).

        Args:
            holder: this instance's name.
            lease_seconds: how long the lease lasts without renewal.
            stalled_seconds: ``event_time.stalled_partition_seconds``.
            keep_buckets: partials and VIP rows of buckets this far before the closed
                one are deleted.
        """
        with self._db.transaction() as db:
            db.execute(
                """INSERT INTO fleet_judge (topic, holder, judged_through, lease_until)
                VALUES (?, NULL, NULL, now()) ON CONFLICT DO NOTHING""", (self.topic,))
            lease = db.execute(
                "SELECT holder, judged_through, lease_until > now() AS live FROM fleet_judge WHERE topic = ?"
                + db.for_update, (self.topic,)).fetchone()
            if lease["holder"] not in (None, holder) and lease["live"]:
                return None
            judged = lease["judged_through"]
            closed = self._closed(db, stalled_seconds)
            if closed is None or (judged is not None and closed <= judged):
                db.execute("UPDATE fleet_judge SET holder = ?, lease_until = now() + ? * interval '1 second' "
                           "WHERE topic = ?", (holder, lease_seconds, self.topic))
                return FleetClaim(lease["holder"], judged, judged)
            since = judged if judged is not None else -(2 ** 62)
            partials = [bytes(row["frame"]) for row in db.execute(
                """SELECT frame FROM fleet_partials WHERE topic = ? AND bucket > ? AND bucket <= ?
                ORDER BY bucket, partition""", (self.topic, since, closed)).fetchall()]
            vips = [(row["event_id"], row["bucket"], row["at_us"], list(row["scope_keys"])) for row in db.execute(
                """SELECT event_id, bucket, at_us, scope_keys FROM fleet_vips
                WHERE topic = ? AND bucket > ? AND bucket <= ?""", (self.topic, since, closed)).fetchall()]
            db.execute("UPDATE fleet_judge SET holder = ?, lease_until = now() + ? * interval '1 second' "
                       "WHERE topic = ?", (holder, lease_seconds, self.topic))
            if judged is not None:
                db.execute("DELETE FROM fleet_partials WHERE topic = ? AND bucket <= ?",
                           (self.topic, judged - keep_buckets))
                db.execute("DELETE FROM fleet_vips WHERE topic = ? AND bucket <= ?",
                           (self.topic, judged - keep_buckets))
        return FleetClaim(lease["holder"], judged, closed, partials, vips)

    def advance(self, holder: str, *, before: int | None, through: int, lease_seconds: float,
                db: Database | None = None) -> None:
        """Mark the buckets up to ``through`` judged, fenced by the lease; renew the lease.

        Run it inside the transaction that stores the round's changes (``db``: the
        alert store's, see ``AlertStore.record(fence=...)``), so that the changes and
        the judged bucket are committed together or not at all; without ``db`` it runs
        in a transaction of its own (a round without changes).

        Args:
            holder: this instance's name.
            before: the ``judged_through`` the round was claimed with.
            through: the last bucket the round judged.
            lease_seconds: how long the renewed lease lasts.
            db: the transaction to run in (``None``: a new one).

        Raises:
            LeaseLost: another instance holds the lease now or the judged bucket moved
                (that instance judges these buckets); nothing is changed.
        """
        sql = ("UPDATE fleet_judge SET judged_through = ?, lease_until = now() + ? * interval '1 second' "
               "WHERE topic = ? AND holder = ? AND judged_through IS NOT DISTINCT FROM ?")
        args = (through, lease_seconds, self.topic, holder, before)
        if db is not None:
            moved = db.execute(sql, args).rowcount
        else:
            with self._db.transaction() as own:
                moved = own.execute(sql, args).rowcount
        if not moved:
            raise LeaseLost(f"{holder} no longer holds the judge's lease of {self.topic!r} "
                            f"at bucket {before}")

    def release(self, holder: str) -> None:
        """Give the lease up at once (a clean stop): the next instance to ask judges."""
        self._db.execute("UPDATE fleet_judge SET lease_until = now() WHERE topic = ? AND holder = ?",
                         (self.topic, holder))

    def _closed(self, db: Database, stalled_seconds: float) -> int | None:
        rows: list[Any] = db.execute(
            """SELECT partition, partitions, flushed_through, caught_up,
                extract(epoch FROM now() - progressed_at) AS idle,
                extract(epoch FROM now() - min(created_at) OVER ()) AS age
            FROM fleet_progress WHERE topic = ?""", (self.topic,)).fetchall()
        if not rows:
            return None
        expected = max(int(row["partitions"]) for row in rows)
        if len(rows) < expected and float(rows[0]["age"]) < stalled_seconds:
            return None  # a partition nobody has reported yet: wait for it (up to the stall bound)
        holding: list[int] = []
        for row in rows:
            if not row["caught_up"] and float(row["idle"]) >= stalled_seconds:
                continue  # stuck: it must not freeze the fleet
            if row["flushed_through"] is None:
                return None
            holding.append(int(row["flushed_through"]))
        return min(holding) if holding else None
