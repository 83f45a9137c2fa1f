"""The alert store's PostgreSQL adapter (psycopg 3): the store's SQL translated, every wait bounded.

The contract it fulfils (SQL written once for both databases, transient or permanent
errors) is :mod:`monitor.alerts.store.db`; the session's timeouts and the watchdog
that bounds a silent server are :mod:`monitor.alerts.store.pg_session`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Final, TypeVar

import psycopg

from monitor.alerts.store.db import Cursor, Database, StoreUnavailable
from monitor.alerts.store.pg_session import ANSWER_GRACE_SECONDS, AnswerWatchdog, connection_params
from monitor.config import PostgresSettings
from monitor.secrets import redact_secret, redact_url

__all__ = ["OUTBOX_CHANNEL", "PostgresDatabase"]

T = TypeVar("T")
# SQL that only SQLite runs; refused for PostgreSQL with the portable spelling.
_SQLITE_ONLY: Final = re.compile(r"\bINSERT\s+OR\s+(IGNORE|REPLACE)\b|\bPRAGMA\b", re.IGNORECASE)
#: Where a committed outbox row is announced (``LISTEN``: :mod:`monitor.alerts.store.notify`).
OUTBOX_CHANNEL: Final = "cardmon_outbox"
# A statement that may put a due row in the outbox: a new delivery, or one set pending again.
_OUTBOX_WRITE: Final = re.compile(
    r"\bINSERT\s+INTO\s+deliveries\b|\bUPDATE\s+deliveries\s+SET\s+status\s*=\s*'pending'",
    re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def _writes_outbox(sql: str) -> bool:
    return _OUTBOX_WRITE.search(sql) is not None


class _PgRow:
    """A PostgreSQL row readable by name and by index, like ``sqlite3.Row``."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values  # the row's values in column order
        self._index = index  # <column name: position>, shared by the rows of one result

    def __getitem__(self, key: int | str) -> Any:
        return self._values[self._index[key] if isinstance(key, str) else key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def keys(self) -> list[str]:
        return list(self._index)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


def _pg_row_factory(cursor: Any) -> Any:
    description = cursor.description or ()
    index = {column.name: position for position, column in enumerate(description)}
    return lambda values: _PgRow(values, index)


@functools.lru_cache(maxsize=1024)
def _pg_sql(sql: str) -> str:
    """Translate ``?`` placeholders to ``%s`` and escape ``%`` (outside string literals too)."""
    if _SQLITE_ONLY.search(sql):
        raise ValueError(
            "SQLite-only SQL sent to PostgreSQL (use INSERT ... ON CONFLICT DO NOTHING, "
            f"no PRAGMA): {sql[:80]!r}")
    out: list[str] = []
    quoted = False
    for char in sql:
        if char == "'":
            quoted = not quoted
        if char == "?" and not quoted:
            out.append("%s")
        elif char == "%":
            out.append("%%")
        else:
            out.append(char)
    return "".join(out)


class PostgresDatabase(Database):
    """A PostgreSQL connection (psycopg 3) that autocommits outside :meth:`transaction`.

    Transactions run at ``READ COMMITTED``; the store makes each race safe with row
    locks (:attr:`for_update`), unique keys with ``ON CONFLICT DO NOTHING`` and
    conditional updates.

    Every wait is bounded (:mod:`monitor.alerts.store.pg_session`): server statement, lock
    and idle-in-transaction timeouts, TCP keepalives and ``tcp_user_timeout``, a
    connect timeout, and a client deadline of ``statement_timeout + 5 s`` per
    statement. A broken connection (a server restart, a failover, a half-open
    connection dropped by the deadline) makes the call raise
    :class:`StoreUnavailable`; the next call outside a transaction opens a new
    connection. A statement is never run again here: whether to repeat a whole
    transaction is the store's decision (:func:`~monitor.alerts.store.connection.retried`), and the caller's.

    Args:
        url: ``postgresql://user[:password]@host[:port]/database[?param=value]``; any
            libpq parameter works, and so do ``PGPASSWORD`` and ``~/.pgpass``.
        settings: timeouts and keepalives (the defaults of :class:`PostgresSettings`
            when ``None``).

    Raises:
        StoreUnavailable: the server cannot be reached or refuses the login.
        psycopg.ProgrammingError: the URL is malformed.
    """

    dialect = "postgresql"
    # NO KEY UPDATE: the store never changes a key, so a row lock must not block the
    # foreign-key checks (KEY SHARE) of another transaction's inserts.
    for_update = " FOR NO KEY UPDATE"
    for_update_skip_locked = " FOR NO KEY UPDATE SKIP LOCKED"

    def __init__(self, url: str, settings: PostgresSettings | None = None) -> None:
        self._url = url  # may hold the password: never logged (see redact_url)
        settings = settings if settings is not None else PostgresSettings()
        self._params = connection_params(url, settings)  # may hold the password too
        # Seconds a statement may go unanswered before the connection is dropped.
        self._answer_seconds = settings.statement_timeout_seconds + ANSWER_GRACE_SECONDS
        self._closed = False
        self._interrupted = False
        self._in_transaction = False
        self._outbox_written = False  # this transaction may have added a due outbox row
        self._watchdog = AnswerWatchdog()
        try:
            self._conn = self._connect()
        except BaseException:
            self._watchdog.stop()
            raise

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(autocommit=True, row_factory=_pg_row_factory, **self._params)
        except psycopg.OperationalError as error:
            raise StoreUnavailable("cannot reach the PostgreSQL alert store: "
                                   + redact_secret(str(error).strip(), self._url)) from None
        except psycopg.Error as error:
            raise type(error)(redact_secret(str(error).strip(), self._url)) from None
        try:
            self._watchdog.watch(conn)
        except OSError:
            conn.close()
            raise StoreUnavailable("the PostgreSQL alert store closed the new connection") from None
        return conn

    def _connection(self) -> psycopg.Connection[Any]:
        if self._interrupted or self._closed:
            raise StoreUnavailable("the alert store is closing")
        if self._conn.closed:
            if self._in_transaction:  # never continue a transaction on a new connection
                raise StoreUnavailable("the connection to the PostgreSQL alert store broke "
                                       "during a transaction (it was rolled back)")
            self._conn = self._connect()
        return self._conn

    def _run(self, call: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run one statement under the answer deadline; a broken connection is StoreUnavailable."""
        conn = self._connection()
        self._watchdog.arm(self._answer_seconds)
        fired = None
        try:
            return call(conn)
        except psycopg.Error as error:
            fired = self._watchdog.disarm()
            if not conn.closed:
                raise  # the server answered with an error; the connection is fine
            reason = fired or str(error).strip().splitlines()[0]
            raise StoreUnavailable(f"lost the connection to the PostgreSQL alert store: {reason}") from None
        finally:
            self._watchdog.disarm()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        query, values = _pg_sql(sql), tuple(params)
        cursor = self._run(lambda conn: conn.execute(query, values))
        self._outbox_write(sql)
        return cursor

    def _outbox_write(self, sql: str) -> None:
        """Announce a due outbox row: at COMMIT in a transaction (PostgreSQL sends it then), else now."""
        if not _writes_outbox(sql):
            return
        if self._in_transaction:
            self._outbox_written = True
        else:
            self._notify_outbox()

    def _notify_outbox(self) -> None:
        self._run(lambda conn: conn.execute(f"NOTIFY {OUTBOX_CHANNEL}"))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        query, values = _pg_sql(sql), [tuple(row) for row in rows]
        if not values:
            return

        def run(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cursor:
                cursor.executemany(query, values)

        self._run(run)
        self._outbox_write(sql)

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        # BEGIN/COMMIT are statements like any other: the answer deadline covers them.
        self.execute("BEGIN")
        self._in_transaction = True
        self._outbox_written = False
        try:
            yield self
            if self._outbox_written:  # delivered to the listeners only if the COMMIT succeeds
                self._notify_outbox()
            self.execute("COMMIT")
        except BaseException:
            if not self._conn.closed and not self._interrupted:
                with suppress(psycopg.Error, StoreUnavailable):
                    self.execute("ROLLBACK")
            raise
        finally:
            self._in_transaction = False

    def lock_keys(self, keys: Iterable[str]) -> None:
        # Transaction-scoped advisory locks on a 64-bit hash of each name; a collision
        # only makes two writers wait for each other. lock_timeout bounds each wait.
        for key in sorted(set(keys)):
            self.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (key,))

    def interrupt(self) -> None:
        self._interrupted = True
        self._watchdog.fire("the alert store is closing")

    def close(self) -> None:
        self._closed = True
        self._watchdog.stop()
        self._conn.close()

    def __repr__(self) -> str:
        return f"PostgresDatabase(url={redact_url(self._url)!r})"
