"""The durable alert store and its delivery outbox (SQLite, or PostgreSQL for several instances).

:class:`AlertStore` is the one public entry. Its parts, one concern each, are
classes it is built from:

- recording a batch of VIP failures, in one committed transaction
  (:mod:`~monitor.alerts.store.recording`, guarantees step by step), and who each new
  alert goes to (:mod:`~monitor.alerts.store.enqueue`);
- reading alerts back (:mod:`~monitor.alerts.store.reading`), a client's recent alerts
  and what else failed at a terminal (:mod:`~monitor.alerts.store.client_reads`), the
  terminals that hurt VIP clients most (:mod:`~monitor.alerts.store.impact`);
- the outbox: claiming, leasing and marking deliveries
  (:mod:`~monitor.alerts.store.outbox`), what an outcome does to alert states
  (:mod:`~monitor.alerts.store.outcomes`), re-sending (:mod:`~monitor.alerts.store.resend`);
- the lifecycle: acknowledgement and resolution (:mod:`~monitor.alerts.store.lifecycle`),
  escalation steps (:mod:`~monitor.alerts.store.escalation`);
- the recovery watch's follow-up messages (:mod:`~monitor.alerts.store.follow_ups`);
- daily digests (:mod:`~monitor.alerts.store.digests`), the rate cap's summaries
  (:mod:`~monitor.alerts.store.summaries`), storm control's incidents and notices
  (:mod:`~monitor.alerts.store.incidents` writes them,
  :mod:`~monitor.alerts.store.incident_reads` reads them);
- the recovery watch: did a VIP client complete a transaction of the alert's kind
  afterwards (:mod:`~monitor.alerts.store.recoveries`);
- the managers' workspace: used sign-in tokens and sessions
  (:mod:`~monitor.alerts.store.workspace`), a team lead's page's reads
  (:mod:`~monitor.alerts.store.team_reads`);
- the fast-correction report's reads (:mod:`~monitor.alerts.store.report_reads`).

Below them: the connection, its lock, transactions and retries
(:mod:`~monitor.alerts.store.connection`), the database adapters
(:mod:`~monitor.alerts.store.db` the contract, :mod:`~monitor.alerts.store.sqlite`,
:mod:`~monitor.alerts.store.postgres`), the schemas and their migrations, the rows
(:mod:`~monitor.alerts.store.rows`) and the routing inputs a write carries
(:mod:`~monitor.alerts.store.routes`). A store persists; what a message says is
:mod:`monitor.alerts.messages`, and the jobs that claim work in it are
:mod:`monitor.alerts.jobs`: the store imports neither.

The store holds one connection guarded by a lock; every method is short and
synchronous — from asyncio call it through :func:`asyncio.to_thread`.

Several instances may share one PostgreSQL store (``docs/alert-store.md``): each
race is settled in the database — unique keys with ``ON CONFLICT DO NOTHING`` for
events, alerts, outbox rows and digests; ``FOR NO KEY UPDATE SKIP LOCKED`` when
claiming outbox rows; a row lock, then a check of the state read, for every
transition (sent, failed, acknowledged, resolved, escalated). The SQL is written
once for both databases (:mod:`monitor.alerts.store.db` says how).
"""

from __future__ import annotations

from monitor.alerts.store.client_reads import ClientHistory, ClientQueries, TerminalActivity
from monitor.alerts.store.digests import DigestQueries, DigestRecord
from monitor.alerts.store.escalation import EscalationCandidate, EscalationQueries
from monitor.alerts.store.follow_ups import FollowUpQueries
from monitor.alerts.store.impact import ImpactQueries, TerminalImpact
from monitor.alerts.store.incident_reads import IncidentQueries, StormCounts
from monitor.alerts.store.lifecycle import LifecycleQueries, LifecycleRecord
from monitor.alerts.store.outbox import OutboxQueries
from monitor.alerts.store.reading import AlertPage, ReadQueries
from monitor.alerts.store.recording import (
    DEFAULT_WINDOW_SECONDS,
    Recording,
    RecordResult,
    window_start_for,
)
from monitor.alerts.store.recoveries import Recovery, RecoveryMatch, RecoveryQueries
from monitor.alerts.store.report_reads import ReportAlert, ReportFailure, ReportQueries
from monitor.alerts.store.resend import Resend, ResendQueries
from monitor.alerts.store.summaries import SummaryQueries
from monitor.alerts.store.team_reads import AcknowledgementCounts, TeamQueries
from monitor.alerts.store.workspace import StoredSession, WorkspaceQueries

__all__ = [
    "DEFAULT_WINDOW_SECONDS",
    "AcknowledgementCounts",
    "AlertPage",
    "AlertStore",
    "ClientHistory",
    "DigestRecord",
    "EscalationCandidate",
    "LifecycleRecord",
    "RecordResult",
    "Recovery",
    "RecoveryMatch",
    "ReportAlert",
    "ReportFailure",
    "Resend",
    "StoredSession",
    "StormCounts",
    "TerminalActivity",
    "TerminalImpact",
    "window_start_for",
]


class AlertStore(Recording, ReadQueries, ClientQueries, ImpactQueries, OutboxQueries,
                 ResendQueries, LifecycleQueries, EscalationQueries, DigestQueries,
                 SummaryQueries, IncidentQueries, WorkspaceQueries, TeamQueries,
                 RecoveryQueries, FollowUpQueries, ReportQueries):
    """Alerts, their events and the delivery outbox in a SQLite file or a PostgreSQL database.

    Args:
        location: a SQLite file (parent directories are created; ``":memory:"`` works
            for throwaway use), or a ``postgresql://user[:password]@host[:port]/db``
            URL — the database must exist; the schema is created or upgraded in it.
            The URL's password is never logged nor shown in ``repr``.

        postgres: timeouts and keepalives of a PostgreSQL connection
            (:class:`~monitor.config.PostgresSettings`; its defaults when ``None``).

    Errors of every method are transient or permanent by
    :func:`monitor.alerts.store.db.is_transient`: a transient one (the database down or
    unreachable, :class:`~monitor.alerts.store.db.StoreUnavailable`; a lock or statement
    timeout; a deadlock) is retried inside the store for a few seconds at most, then
    raised, and the caller rides out the rest of the outage with its own backoff.

    Raises:
        sqlite3.DatabaseError: not an SQLite file, or one from a newer cardmon.
        StoreUnavailable: PostgreSQL cannot be reached or refuses the login.
        psycopg.Error: the URL is malformed, or the database holds a schema from a
            newer cardmon.
    """
