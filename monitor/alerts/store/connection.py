"""The alert store's one connection: opening it, its lock, its transactions and their retries.

:class:`StoreConnection` is the base of :class:`~monitor.alerts.store.AlertStore`: it
opens the database a location names (:func:`connect`), creates or upgrades the schema,
and holds the connection behind a lock (a connection is not thread-safe); each part
of the store (recording, the outbox, the lifecycle...) is a subclass that reads under
``self._lock`` and writes in ``self._transaction()``, which takes the lock.
:func:`retried` runs a write method again when it failed in a way that passes in a moment.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, ParamSpec, Self, TypeVar

import psycopg
import tenacity

from monitor.alerts.store.db import Database, is_transient, is_url
from monitor.alerts.store.notify import OutboxListener
from monitor.alerts.store.postgres import PostgresDatabase
from monitor.alerts.store.schema import migrate
from monitor.alerts.store.schema_pg import migrate_pg, pg_schema_version
from monitor.alerts.store.sqlite import SqliteDatabase
from monitor.config import PostgresSettings
from monitor.secrets import redact_url

__all__ = ["StoreConnection", "connect", "retried"]

# The store's logger, where the retries of retried() have always been logged.
log = logging.getLogger("monitor.alerts.store")
P = ParamSpec("P")
R = TypeVar("R")

_URL_SCHEMES: Final = ("postgresql://", "postgres://")
# A deadlock aborts one of two transactions: running it again twice more is plenty.
_TRANSACTION_ATTEMPTS: Final = 3
# No new attempt after this many seconds: a lock or statement timeout (10 s and more)
# is not waited out twice here; the caller's backoff takes over.
_RETRY_WINDOW_SECONDS: Final = 5.0


def connect(location: str | Path, postgres: PostgresSettings | None = None) -> Database:
    """Open the store's database: a ``postgresql://`` URL, else a SQLite file path.

    Args:
        location: the URL or the file.
        postgres: the PostgreSQL connection's timeouts and keepalives (defaults if ``None``).

    Raises:
        sqlite3.Error: the SQLite file cannot be opened.
        StoreUnavailable: the PostgreSQL server cannot be reached or refuses the login.
        psycopg.Error: the URL is malformed or not ``postgresql://`` (never with its password).
    """
    if is_url(location):
        if not str(location).startswith(_URL_SCHEMES):
            scheme = str(location).partition("://")[0]
            raise psycopg.InterfaceError(
                f"unsupported alert store URL scheme {scheme!r}: use postgresql://user:password@host/db")
        return PostgresDatabase(str(location), postgres)
    return SqliteDatabase(location)


class StoreConnection:
    """The store's connection, lock and transactions (the base of every part of the store).

    Args:
        location: a SQLite file or a ``postgresql://`` URL (see
            :class:`~monitor.alerts.store.AlertStore`).
        postgres: timeouts and keepalives of a PostgreSQL connection (defaults if ``None``).

    Raises:
        sqlite3.DatabaseError: not an SQLite file, or one from a newer cardmon.
        StoreUnavailable: PostgreSQL cannot be reached or refuses the login.
        psycopg.Error: the URL is malformed, or the database holds a schema from a
            newer cardmon.
    """

    def __init__(self, location: str | Path, *, postgres: PostgresSettings | None = None) -> None:
        self._location = redact_url(str(location)) if is_url(location) else str(location)
        self._lock = threading.Lock()  # guards self._conn; a connection is not thread-safe
        self._closing = False  # set by close(): no more retries, running statements end
        # What an outbox listener connects with (PostgreSQL only; may hold the password).
        self._listen_to = (str(location), postgres) if is_url(location) else None
        self._conn: Database = connect(location, postgres)
        try:
            with self._transaction() as conn:
                if isinstance(conn, SqliteDatabase):
                    migrate(conn.raw, self._location)
                else:
                    migrate_pg(conn, self._location)
        except BaseException:
            self._conn.close()
            raise

    @property
    def location(self) -> str:
        """The SQLite file, or the PostgreSQL URL with its password replaced by ``***``."""
        return self._location

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._conn.dialect

    @property
    def schema_version(self) -> int:
        """The store's schema version (SQLite ``PRAGMA user_version``, PostgreSQL ``cardmon_schema``)."""
        with self._lock:
            if self._conn.dialect == "postgresql":
                return pg_schema_version(self._conn)
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def __repr__(self) -> str:
        return f"AlertStore({self._location!r})"

    def outbox_listener(self, on_notify: Callable[[], object]) -> OutboxListener | None:
        """A listener for outbox rows committed by any instance (PostgreSQL), not started.

        Args:
            on_notify: called from the listener's thread when rows were committed
                (see :class:`~monitor.alerts.store.notify.OutboxListener`).

        Returns:
            The listener, or ``None`` for a SQLite store (one process: nothing to hear).
        """
        if self._listen_to is None:
            return None
        url, postgres = self._listen_to
        return OutboxListener(url, on_notify, postgres)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; committed data stays.

        Safe from any thread, and quick: a call still running in another thread (a
        lock wait, a silent server) is interrupted and raises
        :class:`~monitor.alerts.store.db.StoreUnavailable`; nothing is retried after this.
        """
        self._closing = True
        if not self._lock.acquire(blocking=False):
            self._conn.interrupt()
            self._lock.acquire()
        try:
            self._conn.close()
        finally:
            self._lock.release()

    @contextmanager
    def _transaction(self) -> Iterator[Database]:
        # Under the lock: the one connection serves every thread (the pipeline, the
        # API, the delivery workers), and two threads' statements interleaved on it
        # break both transactions. Never call this while holding self._lock.
        # SQLite: BEGIN IMMEDIATE (one writer at a time). PostgreSQL: READ COMMITTED,
        # each race settled by a unique key, a row lock or a conditional update.
        with self._lock, self._conn.transaction() as conn:
            yield conn


def retried(method: Callable[P, R]) -> Callable[P, R]:
    """Run a write method again, briefly, when it failed in a way that may pass (:func:`is_transient`).

    Each write method is one transaction with no effect outside it, so running it again
    is safe. What passes in a moment is retried here: a deadlock (two instances locking
    the same rows in opposite orders: ``record`` orders its alert locks, but incident
    changes, summaries and notices touch rows in the order of their own data), a
    server restart or failover a few seconds long. At most :data:`_TRANSACTION_ATTEMPTS`
    attempts, none started after :data:`_RETRY_WINDOW_SECONDS`; then the error is
    raised, and riding out a longer outage is the caller's job (with backoff and its
    stop signal). A store that is closing is not retried.
    """
    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        store = args[0]
        retrying = tenacity.Retrying(
            stop=(tenacity.stop_after_attempt(_TRANSACTION_ATTEMPTS)
                  | tenacity.stop_after_delay(_RETRY_WINDOW_SECONDS)),
            wait=tenacity.wait_random_exponential(multiplier=0.1, max=1.0),
            retry=tenacity.retry_if_exception(
                lambda error: is_transient(error) and not getattr(store, "_closing", False)),
            before_sleep=lambda state: log.warning(
                "alert store: %s failed (%s), trying again (%d/%d)", method.__name__,
                _error_name(state), state.attempt_number + 1, _TRANSACTION_ATTEMPTS),
            reraise=True,
        )
        return retrying(method, *args, **kwargs)
    return run


def _error_name(state: tenacity.RetryCallState) -> str:
    error = state.outcome.exception() if state.outcome is not None else None
    return type(error).__name__ if error is not None else "?"
