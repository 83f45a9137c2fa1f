"""The alert store's SQLite schema and its migrations.

The file's version is ``PRAGMA user_version``. Version 1 is the original store
(alerts, their events, the delivery outbox); version 2 adds the lifecycle
(``alerts.state``, ``alerts.escalation_step``, ``alert_history``) and outbox rows per
recipient (unique on ``(alert_id, channel, recipient_id)``; ``recipient_id`` is ``''``
for the alert's own manager and for sinks). Version 3 adds the managers' daily
digests (``digests``, unique on ``(manager_id, local_date)``) and lets an outbox row's
``alert_id`` name a digest (``dg-...``) as well as an alert. Version 4 adds storm
control (``incidents``, ``incident_alerts``, ``incident_notices``; an outbox row may
name an incident notice ``ic-...``) and the outbox status ``merged`` (a manager's
message folded into an incident notice). Version 5 makes ``notified`` mean "a
person's channel accepted it" (states recomputed: a sink alone no longer notifies),
bounds retries by time (``deliveries.first_attempt_at``), records the fallback
(``fallback_at``) and re-sends (``resent_by``, ``resent_at``), flags late alerts
(``alerts.late``: stale events, paged to nobody) and unroutable ones
(``alerts.unroutable``), and lets the history say ``resent``, ``fallback`` and
``corrected``. Version 6 adds the managers' workspace: used sign-in tokens
(``sign_in_tokens``, unique on ``token_id``: a link signs in once) and server-side
sessions (``workspace_sessions``, keyed by the SHA-256 of the session ID, so the table
never holds a usable cookie). Version 7 adds a resolution's outcome
(``alert_history.outcome``: what was done, from a fixed vocabulary; ``NULL`` otherwise).
Version 8 adds the recovery watch (``alert_recoveries``, one row per alert: did the
client complete a transaction of the same kind after the failure, and where:
``docs/recovery.md``) and lets an outbox row name its recovery follow-up (``rf-...``,
:mod:`~monitor.alerts.store.schema_follow_up`). See ``docs/alert-lifecycle.md``, ``docs/workspace.md``,
``docs/alert-channels.md`` and ``docs/incidents.md``.

A store is never changed any other way than by :func:`migrate`: a new column is a
new version in :data:`_MIGRATIONS`, never an edit of :data:`_SCHEMA` (the version-1
schema, which a new file gets before the migrations run).

This module stays whole (most of its lines are SQL): it is the SQLite store's one
ordered history — the version-1 schema, each migration after it, and :func:`migrate`
that applies them — so a migration is read and checked against the versions before it
in one place (:mod:`monitor.alerts.store.schema_pg` mirrors it for PostgreSQL).
"""

from __future__ import annotations

import sqlite3
from typing import Final

from monitor.alerts.store.schema_follow_up import FOLLOW_UP_PARENT_SQLITE

__all__ = ["CORRECTED_NOTE", "RECOVERY_TABLES", "SCHEMA_VERSION", "WORKSPACE_TABLES",
           "corrected_states", "migrate"]

#: The version this code writes and reads.
SCHEMA_VERSION: Final = 8

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    customer_name TEXT NOT NULL,
    tier TEXT NOT NULL,
    manager_id TEXT NOT NULL,
    manager_name TEXT NOT NULL,
    manager_email TEXT,
    manager_webhook_url TEXT,
    manager_timezone TEXT NOT NULL,
    severity TEXT NOT NULL,
    severity_rank INTEGER NOT NULL,
    suggested_action TEXT NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    first_event_at TEXT NOT NULL,
    last_event_at TEXT NOT NULL,
    event_count INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_customer ON alerts (customer_id, window_start);
CREATE TABLE IF NOT EXISTS alert_events (
    event_id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES alerts (alert_id) DEFERRABLE INITIALLY DEFERRED,
    occurred_at TEXT NOT NULL,
    channel TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    merchant_id TEXT,
    txn_type TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    response_code TEXT,
    outcome TEXT NOT NULL,
    response_meaning TEXT NOT NULL,
    status TEXT NOT NULL,
    card_ref TEXT,
    pan_masked TEXT,
    entry_mode TEXT,
    latency_ms REAL,
    city TEXT,
    region TEXT,
    branch_id TEXT,
    severity TEXT NOT NULL,
    suggested_action TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_events_by_alert ON alert_events (alert_id, occurred_at);
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL REFERENCES alerts (alert_id) DEFERRABLE INITIALLY DEFERRED,
    channel TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    sent_at TEXT,
    UNIQUE (alert_id, channel)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
"""

# The outbox columns of schema 1, copied when schema 2 rebuilds the table.
_DELIVERY_COLUMNS_V1: Final = (
    "delivery_id, alert_id, channel, status, attempts, next_attempt_at, last_error, "
    "created_at, updated_at, sent_at"
)

# The outbox columns of schema 2, copied when schema 3 rebuilds the table.
_DELIVERY_COLUMNS_V2: Final = (
    f"{_DELIVERY_COLUMNS_V1}, recipient_id, recipient_name, recipient_email, "
    "recipient_webhook_url, recipient_timezone"
)

# The outbox columns of schema 3 (the same as 2), copied when schema 4 rebuilds the table.
_DELIVERY_COLUMNS_V3: Final = _DELIVERY_COLUMNS_V2

# The history columns of schema 2 (unchanged since), copied when schema 5 rebuilds the table.
_HISTORY_COLUMNS_V2: Final = "history_id, alert_id, action, from_state, to_state, actor, via, note, at"

# Schema 5: "a person was told" -- a 'notified' history row through a person's channel
# (e-mail, webhook, Apprise; incident notices and summaries write one too).
_TOLD: Final = """EXISTS (SELECT 1 FROM alert_history h WHERE h.alert_id = a.alert_id
    AND h.action = 'notified' AND (h.via IN ('email', 'webhook') OR h.via LIKE 'apprise:%'))"""
# Schema 5: the state an alert nobody was told of has: 'failed' when its deliveries to
# people all failed, else 'open' (still being tried, or carried by a notice or summary).
_UNTOLD_STATE: Final = """CASE WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = a.alert_id
        AND (d.channel IN ('email', 'webhook') OR d.channel LIKE 'apprise:%') AND d.status = 'failed')
    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = a.alert_id
        AND (d.channel IN ('email', 'webhook') OR d.channel LIKE 'apprise:%') AND d.status != 'failed')
    THEN 'failed' ELSE 'open' END"""
#: Schema 5's history note on an alert whose state it corrected.
CORRECTED_NOTE: Final = ("schema 5: 'notified' now means a person's channel (e-mail, webhook, "
                         "Apprise) accepted the alert; only a sink or nothing had")


def corrected_states(now_sql: str) -> tuple[str, ...]:
    """Schema 5's statements that recompute the states a sink alone had made ``notified``.

    Shared by SQLite and PostgreSQL (:mod:`monitor.alerts.store.schema_pg`): a history row
    ``corrected`` (actor ``cardmon``, via ``schema``) for each alert that changes, then
    the change. Acknowledged and resolved alerts keep their state.

    Args:
        now_sql: the dialect's SQL expression for "now" in the store's text format.
    """
    where = f"a.state IN ('open', 'notified', 'failed') AND NOT {_TOLD} AND {_UNTOLD_STATE} != a.state"
    return (
        f"""INSERT INTO alert_history (alert_id, action, from_state, to_state, actor, via, note, at)
            SELECT a.alert_id, 'corrected', a.state, {_UNTOLD_STATE}, 'cardmon', 'schema',
                   '{CORRECTED_NOTE.replace("'", "''")}', {now_sql}
            FROM alerts a WHERE {where} ORDER BY a.created_at, a.alert_id""",
        f"""UPDATE alerts SET state = (SELECT {_UNTOLD_STATE} FROM alerts a
                                      WHERE a.alert_id = alerts.alert_id)
            WHERE alert_id IN (SELECT a.alert_id FROM alerts a WHERE {where})""",
    )


#: Schema 6 (SQLite; :mod:`~monitor.alerts.store.schema_pg` has the PostgreSQL twin).
WORKSPACE_TABLES: Final = (
    # A sign-in token's ID once it was used: a link signs in once. Rows past their
    # expiry are deleted (the signature refuses the token by then anyway).
    """CREATE TABLE sign_in_tokens (
        token_id TEXT PRIMARY KEY,
        manager_id TEXT NOT NULL,
        used_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    )""",
    "CREATE INDEX sign_in_tokens_expiry ON sign_in_tokens (expires_at)",
    # A workspace session: the SHA-256 of its random ID (never the ID itself), whose it
    # is, until when, and when it was revoked (sign-out, or a revocation by operations).
    """CREATE TABLE workspace_sessions (
        session_hash TEXT PRIMARY KEY,
        manager_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        revoked_at TEXT
    )""",
    "CREATE INDEX workspace_sessions_by_manager ON workspace_sessions (manager_id)",
    "CREATE INDEX workspace_sessions_expiry ON workspace_sessions (expires_at)",
)


#: Schema 8, the recovery watch (the same statements on PostgreSQL, every text column
#: ``COLLATE "C"`` there). One row per alert in ``alert_recoveries``, written with the
#: alert: the client's next transactions are watched from the alert's first failure
#: until ``deadline`` (its last failure + the watch window), in event time.
#: ``channel``, ``txn_type``, ``outcome`` and ``failed_terminal_id`` are those of the
#: alert's earliest failure (event time, whatever order failures are recorded in);
#: ``alert_recovery_kinds`` holds every kind (``channel``, ``txn_type``) that failed in
#: the alert with its first failure: an approved transaction of any of them after that
#: failure recovers the watch. ``status``: ``watching``, then ``recovered`` (the
#: ``recovery_*`` columns say which transaction, of which kind, where and when, and
#: that kind's first failure in the alert: when and at which terminal) or
#: ``abandoned`` (none before the deadline passed). ``follow_up``: 0 not yet, 1 a
#: follow-up was queued for the manager, 2 none is sent
#: (:mod:`~monitor.alerts.store.follow_ups`). Times are UTC ISO-8601 text like every
#: other time in the store.
RECOVERY_TABLES: Final = (
    """CREATE TABLE alert_recoveries (
        alert_id {T} PRIMARY KEY REFERENCES alerts (alert_id) DEFERRABLE INITIALLY DEFERRED,
        customer_id {T} NOT NULL,
        manager_id {T} NOT NULL,
        channel {T} NOT NULL,
        txn_type {T} NOT NULL,
        outcome {T} NOT NULL,
        failed_terminal_id {T} NOT NULL,
        first_failed_at {T} NOT NULL,
        last_failed_at {T} NOT NULL,
        deadline {T} NOT NULL,
        status {T} NOT NULL DEFAULT 'watching'
            CHECK (status IN ('watching', 'recovered', 'abandoned')),
        recovered_at {T},
        recovery_event_id {T},
        recovery_terminal_id {T},
        recovery_merchant_id {T},
        recovery_channel {T},
        recovery_txn_type {T},
        recovery_failed_at {T},
        recovery_failed_terminal_id {T},
        decided_at {T},
        follow_up INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX alert_recoveries_watching ON alert_recoveries (status, deadline)",
    "CREATE INDEX alert_recoveries_by_customer ON alert_recoveries (customer_id, status)",
    "CREATE INDEX alert_recoveries_by_decision ON alert_recoveries (decided_at)",
    # The follow-up job's read: decided watches not looked at yet (a few), not every
    # decision ever made.
    """CREATE INDEX alert_recoveries_follow_up_due ON alert_recoveries (decided_at, alert_id)
        WHERE follow_up = 0 AND status != 'watching'""",
    """CREATE TABLE alert_recovery_kinds (
        alert_id {T} NOT NULL REFERENCES alert_recoveries (alert_id) DEFERRABLE INITIALLY DEFERRED,
        channel {T} NOT NULL,
        txn_type {T} NOT NULL,
        first_failed_at {T} NOT NULL,
        failed_terminal_id {T} NOT NULL,
        PRIMARY KEY (alert_id, channel, txn_type)
    )""",
)

# <version: statements that upgrade the store from version - 1>, applied in order in
# one transaction. A store is never changed any other way: a new column is a new
# version here, never an edit of _SCHEMA (that is the version-1 schema).
_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    2: (
        "ALTER TABLE alerts ADD COLUMN state TEXT NOT NULL DEFAULT 'open'",
        # Steps of the escalation chain already taken (0: none).
        "ALTER TABLE alerts ADD COLUMN escalation_step INTEGER NOT NULL DEFAULT 0",
        """UPDATE alerts SET state = CASE
            WHEN EXISTS (SELECT 1 FROM deliveries d
                         WHERE d.alert_id = alerts.alert_id AND d.status = 'sent') THEN 'notified'
            WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = alerts.alert_id)
             AND NOT EXISTS (SELECT 1 FROM deliveries d
                             WHERE d.alert_id = alerts.alert_id AND d.status != 'failed')
                THEN 'failed'
            ELSE 'open' END""",
        "CREATE INDEX alerts_by_state ON alerts (state, created_at)",
        "CREATE INDEX alerts_by_created ON alerts (created_at, alert_id)",
        """CREATE TABLE alert_history (
            history_id INTEGER PRIMARY KEY AUTOINCREMENT,
            alert_id TEXT NOT NULL REFERENCES alerts (alert_id) DEFERRABLE INITIALLY DEFERRED,
            action TEXT NOT NULL CHECK (action IN
                ('opened', 'notified', 'failed', 'escalated', 'acknowledged', 'resolved')),
            from_state TEXT,
            to_state TEXT NOT NULL,
            actor TEXT NOT NULL,
            via TEXT NOT NULL,
            note TEXT,
            at TEXT NOT NULL
        )""",
        "CREATE INDEX alert_history_by_alert ON alert_history (alert_id, history_id)",
        # The history of alerts recorded before version 2, rebuilt from what the store knew.
        """INSERT INTO alert_history (alert_id, action, from_state, to_state, actor, via, note, at)
            SELECT alert_id, 'opened', NULL, 'open', 'cardmon', 'pipeline',
                   'recorded before the store kept a history (schema 2)', created_at
            FROM alerts ORDER BY created_at, alert_id""",
        """INSERT INTO alert_history (alert_id, action, from_state, to_state, actor, via, note, at)
            SELECT d.alert_id, 'notified',
                   CASE WHEN row_number() OVER (PARTITION BY d.alert_id
                        ORDER BY d.sent_at, d.delivery_id) = 1 THEN 'open' ELSE 'notified' END,
                   'notified', a.manager_id, d.channel, NULL, d.sent_at
            FROM deliveries d JOIN alerts a ON a.alert_id = d.alert_id
            WHERE d.status = 'sent' ORDER BY d.sent_at, d.delivery_id""",
        """INSERT INTO alert_history (alert_id, action, from_state, to_state, actor, via, note, at)
            SELECT a.alert_id, 'failed', 'open', 'failed', 'cardmon',
                   (SELECT d.channel FROM deliveries d WHERE d.alert_id = a.alert_id
                    ORDER BY d.updated_at DESC, d.delivery_id DESC LIMIT 1),
                   (SELECT d.last_error FROM deliveries d WHERE d.alert_id = a.alert_id
                    ORDER BY d.updated_at DESC, d.delivery_id DESC LIMIT 1),
                   (SELECT max(d.updated_at) FROM deliveries d WHERE d.alert_id = a.alert_id)
            FROM alerts a WHERE a.state = 'failed' ORDER BY a.created_at, a.alert_id""",
        # The outbox gets a recipient, so an escalation can send the same channel to
        # another manager: unique on (alert_id, channel, recipient_id). SQLite cannot
        # change a UNIQUE constraint in place, hence the rebuild.
        """CREATE TABLE deliveries_v2 (
            delivery_id INTEGER PRIMARY KEY AUTOINCREMENT,
            alert_id TEXT NOT NULL REFERENCES alerts (alert_id) DEFERRABLE INITIALLY DEFERRED,
            channel TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            sent_at TEXT,
            recipient_id TEXT NOT NULL DEFAULT '',
            recipient_name TEXT,
            recipient_email TEXT,
            recipient_webhook_url TEXT,
            recipient_timezone TEXT,
            UNIQUE (alert_id, channel, recipient_id)
        )""",
        (f"INSERT INTO deliveries_v2 ({_DELIVERY_COLUMNS_V1}) "
         f"SELECT {_DELIVERY_COLUMNS_V1} FROM deliveries"),
        "DROP TABLE deliveries",
        "ALTER TABLE deliveries_v2 RENAME TO deliveries",
        "CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at)",
    ),
    3: (
        # One row per manager and local day: the claim that makes a digest exactly-once
        # across instances (see monitor/alerts/messages/digest.py). The period is fixed when it
        # is claimed; the message is rendered when it is sent.
        """CREATE TABLE digests (
            digest_id TEXT PRIMARY KEY,
            manager_id TEXT NOT NULL,
            local_date TEXT NOT NULL,
            timezone TEXT NOT NULL,
            period_start TEXT NOT NULL,
            period_end TEXT NOT NULL,
            alert_count INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (manager_id, local_date)
        )""",
        "CREATE INDEX digests_by_manager ON digests (manager_id, period_end)",
        "CREATE INDEX alerts_by_manager ON alerts (manager_id, created_at)",
        # An outbox row's alert_id now names an alert or a digest, so the foreign key
        # becomes a trigger that accepts either parent (SQLite cannot drop a foreign key
        # in place, hence the rebuild).
        """CREATE TABLE deliveries_v3 (
            delivery_id INTEGER PRIMARY KEY AUTOINCREMENT,
            alert_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            sent_at TEXT,
            recipient_id TEXT NOT NULL DEFAULT '',
            recipient_name TEXT,
            recipient_email TEXT,
            recipient_webhook_url TEXT,
            recipient_timezone TEXT,
            UNIQUE (alert_id, channel, recipient_id)
        )""",
        (f"INSERT INTO deliveries_v3 ({_DELIVERY_COLUMNS_V2}) "
         f"SELECT {_DELIVERY_COLUMNS_V2} FROM deliveries"),
        # Keep the AUTOINCREMENT high-water mark: a delivery ID is never reused.
        """INSERT INTO sqlite_sequence (name, seq)
            SELECT 'deliveries_v3', seq FROM sqlite_sequence WHERE name = 'deliveries'
            AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'deliveries_v3')""",
        """UPDATE sqlite_sequence SET seq = max(seq, coalesce(
            (SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'), 0))
            WHERE name = 'deliveries_v3'""",
        "DROP TABLE deliveries",
        "ALTER TABLE deliveries_v3 RENAME TO deliveries",
        "CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at)",
        """CREATE TRIGGER deliveries_have_a_parent BEFORE INSERT ON deliveries
            WHEN NOT EXISTS (SELECT 1 FROM alerts WHERE alert_id = NEW.alert_id)
             AND NOT EXISTS (SELECT 1 FROM digests WHERE digest_id = NEW.alert_id)
            BEGIN
                SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: a delivery needs an alert or a digest');
            END""",
    ),
    4: (
        # One row per outage of one scope key; at most one open per key (the partial
        # unique index), so two instances that both detect it keep one. Event times.
        """CREATE TABLE incidents (
            incident_id TEXT PRIMARY KEY,
            scope TEXT NOT NULL CHECK (scope IN ('terminal', 'merchant', 'region', 'issuer', 'network')),
            scope_key TEXT NOT NULL,
            started_at TEXT NOT NULL,
            last_failure_at TEXT NOT NULL,
            ended_at TEXT,
            failures INTEGER NOT NULL,
            cards INTEGER NOT NULL,
            terminals INTEGER NOT NULL,
            relapses INTEGER NOT NULL DEFAULT 0,
            flapping INTEGER NOT NULL DEFAULT 0,
            note TEXT,
            parent_id TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        "CREATE UNIQUE INDEX incidents_open_per_key ON incidents (scope, scope_key) WHERE ended_at IS NULL",
        "CREATE INDEX incidents_by_start ON incidents (started_at, incident_id)",
        # An alert belongs to at most one incident.
        """CREATE TABLE incident_alerts (
            incident_id TEXT NOT NULL REFERENCES incidents (incident_id) DEFERRABLE INITIALLY DEFERRED,
            alert_id TEXT NOT NULL UNIQUE REFERENCES alerts (alert_id) DEFERRABLE INITIALLY DEFERRED,
            manager_id TEXT NOT NULL,
            linked_at TEXT NOT NULL,
            PRIMARY KEY (incident_id, alert_id)
        )""",
        "CREATE INDEX alert_events_by_time ON alert_events (occurred_at)",
        "CREATE INDEX incident_alerts_by_manager ON incident_alerts (incident_id, manager_id, linked_at)",
        # Messages about an incident to one manager: the first, updates, the resolved one;
        # and to their backup or team lead when their clients' alerts escalate (seq < 0).
        """CREATE TABLE incident_notices (
            notice_id TEXT PRIMARY KEY,
            incident_id TEXT NOT NULL REFERENCES incidents (incident_id) DEFERRABLE INITIALLY DEFERRED,
            manager_id TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('opened', 'update', 'resolved', 'escalated')),
            seq INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (incident_id, manager_id, seq)
        )""",
        # The per-manager rate cap: an alert over the cap waits for the manager's next
        # summary (summaries, claimed once per manager and first held alert).
        "ALTER TABLE alerts ADD COLUMN capped_at TEXT",
        "ALTER TABLE alerts ADD COLUMN summary_id TEXT",
        "CREATE INDEX alerts_capped ON alerts (capped_at, manager_id) WHERE capped_at IS NOT NULL",
        """CREATE TABLE summaries (
            summary_id TEXT PRIMARY KEY,
            manager_id TEXT NOT NULL,
            period_start TEXT NOT NULL,
            period_end TEXT NOT NULL,
            alert_count INTEGER NOT NULL,
            created_at TEXT NOT NULL
        )""",
        # The outbox gets the status 'merged' and may name a notice (rebuild: SQLite
        # cannot change a CHECK constraint in place; the trigger goes with the table).
        """CREATE TABLE deliveries_v4 (
            delivery_id INTEGER PRIMARY KEY AUTOINCREMENT,
            alert_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'merged')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            sent_at TEXT,
            recipient_id TEXT NOT NULL DEFAULT '',
            recipient_name TEXT,
            recipient_email TEXT,
            recipient_webhook_url TEXT,
            recipient_timezone TEXT,
            UNIQUE (alert_id, channel, recipient_id)
        )""",
        (f"INSERT INTO deliveries_v4 ({_DELIVERY_COLUMNS_V3}) "
         f"SELECT {_DELIVERY_COLUMNS_V3} FROM deliveries"),
        """INSERT INTO sqlite_sequence (name, seq)
            SELECT 'deliveries_v4', seq FROM sqlite_sequence WHERE name = 'deliveries'
            AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'deliveries_v4')""",
        """UPDATE sqlite_sequence SET seq = max(seq, coalesce(
            (SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'), 0))
            WHERE name = 'deliveries_v4'""",
        "DROP TABLE deliveries",
        "ALTER TABLE deliveries_v4 RENAME TO deliveries",
        "CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at)",
        """CREATE TRIGGER deliveries_have_a_parent BEFORE INSERT ON deliveries
            WHEN NOT EXISTS (SELECT 1 FROM alerts WHERE alert_id = NEW.alert_id)
             AND NOT EXISTS (SELECT 1 FROM digests WHERE digest_id = NEW.alert_id)
             AND NOT EXISTS (SELECT 1 FROM incident_notices WHERE notice_id = NEW.alert_id)
             AND NOT EXISTS (SELECT 1 FROM summaries WHERE summary_id = NEW.alert_id)
            BEGIN
                SELECT RAISE(ABORT,
                    'FOREIGN KEY constraint failed: a delivery needs an alert, a digest or a notice');
            END""",
    ),
    5: (
        # Retries are bounded by time from the first attempt (a row held for working hours
        # starts its window when it is first tried); the fallback is told once per row
        # (fallback_at); a re-send says who asked for it.
        "ALTER TABLE deliveries ADD COLUMN first_attempt_at TEXT",
        "ALTER TABLE deliveries ADD COLUMN fallback_at TEXT",
        "ALTER TABLE deliveries ADD COLUMN resent_by TEXT",
        "ALTER TABLE deliveries ADD COLUMN resent_at TEXT",
        # Rows already being retried: their window started no later than their creation.
        "UPDATE deliveries SET first_attempt_at = created_at WHERE status = 'pending' AND attempts > 0",
        # Late: its first failure was older than alerting.stale_after_seconds when it was
        # processed (a replay after an outage): stored and exported, paged to nobody.
        "ALTER TABLE alerts ADD COLUMN late INTEGER NOT NULL DEFAULT 0",
        # Unroutable: its manager wants messages at its severity but no configured
        # channel reaches them (an e-mail-only manager without an SMTP relay).
        "ALTER TABLE alerts ADD COLUMN unroutable INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX alerts_flagged ON alerts (late, unroutable, created_at)",
        # The card acceptor's name and location (ISO 8583 field 43), as the decoder cleaned it.
        "ALTER TABLE alert_events ADD COLUMN merchant_name TEXT",
        # The history may say resent, fallback and corrected (rebuild: SQLite cannot
        # change a CHECK constraint in place; IDs and their sequence are kept).
        """CREATE TABLE alert_history_v5 (
            history_id INTEGER PRIMARY KEY AUTOINCREMENT,
            alert_id TEXT NOT NULL REFERENCES alerts (alert_id) DEFERRABLE INITIALLY DEFERRED,
            action TEXT NOT NULL CHECK (action IN
                ('opened', 'notified', 'failed', 'escalated', 'acknowledged', 'resolved',
                 'resent', 'fallback', 'corrected')),
            from_state TEXT,
            to_state TEXT NOT NULL,
            actor TEXT NOT NULL,
            via TEXT NOT NULL,
            note TEXT,
            at TEXT NOT NULL
        )""",
        (f"INSERT INTO alert_history_v5 ({_HISTORY_COLUMNS_V2}) "
         f"SELECT {_HISTORY_COLUMNS_V2} FROM alert_history"),
        """INSERT INTO sqlite_sequence (name, seq)
            SELECT 'alert_history_v5', seq FROM sqlite_sequence WHERE name = 'alert_history'
            AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'alert_history_v5')""",
        """UPDATE sqlite_sequence SET seq = max(seq, coalesce(
            (SELECT seq FROM sqlite_sequence WHERE name = 'alert_history'), 0))
            WHERE name = 'alert_history_v5'""",
        "DROP TABLE alert_history",
        "ALTER TABLE alert_history_v5 RENAME TO alert_history",
        "CREATE INDEX alert_history_by_alert ON alert_history (alert_id, history_id)",
        *corrected_states("strftime('%Y-%m-%dT%H:%M:%S', 'now') || '.000000+00:00'"),
    ),
    6: WORKSPACE_TABLES,
    # What a resolution did (monitor.alerts.states.RESOLUTION_OUTCOMES, checked by the
    # store's code: a CHECK here would need a table rebuild for every new outcome).
    7: ("ALTER TABLE alert_history ADD COLUMN outcome TEXT",),
    8: (*(statement.replace("{T}", "TEXT") for statement in RECOVERY_TABLES),
        *FOLLOW_UP_PARENT_SQLITE),
}


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Create a new store or upgrade an older one in place, inside the caller's transaction.

    Version 0 (a new file) gets the version-1 schema, then each later version gets
    its :data:`_MIGRATIONS` in order. Run it in a ``BEGIN IMMEDIATE`` transaction so
    that two processes opening the same old file upgrade it once: the second waits,
    then sees the new version.

    Args:
        conn: a connection inside an open write transaction.
        path: the file, for error messages.

    Raises:
        sqlite3.DatabaseError: the file is not an SQLite database, or was written by
            a newer cardmon (its version is above :data:`SCHEMA_VERSION`).
    """
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"alert store {path} has schema version {version}; this cardmon knows up to "
            f"{SCHEMA_VERSION} (upgrade cardmon)")
    if version == 0:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        version = 1
    for target in range(version + 1, SCHEMA_VERSION + 1):
        for statement in _MIGRATIONS[target]:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
