"""The alert store's connection to SQLite or PostgreSQL, behind one small interface.

:mod:`monitor.alerts.store` writes its SQL once, in the form both databases run:

- ``?`` placeholders (translated to psycopg's ``%s`` for PostgreSQL);
- ``INSERT ... ON CONFLICT DO NOTHING``, never ``INSERT OR IGNORE``;
- ``CASE WHEN ... END`` instead of SQLite's scalar ``max(a, b)``/``min(a, b)``
  (PostgreSQL's are ``greatest``/``least``; the aggregates ``max(col)`` are fine);
- ``INSERT ... RETURNING col`` instead of ``cursor.lastrowid``;
- rows read by column name (``row["state"]``); an index (``row[0]``) works too;
- text timestamps in one fixed-width UTC format, compared as strings (the PostgreSQL
  schema declares text ``COLLATE "C"``, so the order is bytewise in any locale).

Where the two must differ, :class:`Database` says so by name and nothing else:
:attr:`Database.for_update` and :attr:`Database.for_update_skip_locked` are row
locks on PostgreSQL (several instances share it) and empty on SQLite, where
``BEGIN IMMEDIATE`` already gives the writer the whole file.

A :class:`Database` is not thread-safe: the store guards it with its lock. Only
:meth:`Database.interrupt` may be called from another thread.

**Errors: transient or permanent.** Every caller of the store asks
:func:`is_transient` (the contract the consumer, the delivery worker, the scheduled
jobs and the API rely on):

- *transient* — the same call may succeed later, unchanged: the database cannot be
  reached or the connection broke (:class:`StoreUnavailable`), a lock or statement
  timeout, a deadlock or serialization failure, an administrator or crash shutdown,
  the server out of disk or connections; SQLite busy, locked, I/O error or full.
  Retry with backoff, honouring the stop signal. Nothing of a transaction that
  failed this way was committed — except when the connection broke during its
  ``COMMIT``, where the outcome is unknown; the store's writes are idempotent
  (content-derived keys, conditional updates), so running one again is safe.
- *permanent* — the call fails the same way every time: bad data (a NUL byte in a
  text, ``DataError``), a constraint, a bug in SQL. Retrying never helps; the caller
  isolates what caused it (the consumer dead-letters the message).

:data:`TRANSIENT_ERRORS` lists the exception types that are always transient, for
``except`` clauses; :func:`is_transient` also reads SQLSTATE classes and SQLite
result codes, so use it to classify.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sqlite3
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, Protocol, TypeVar

import psycopg

from monitor.alerts.store.pg_session import ANSWER_GRACE_SECONDS, AnswerWatchdog, connection_params
from monitor.config import PostgresSettings
from monitor.errors import StoreError
from monitor.secrets import redact_secret, redact_url

__all__ = [
    "DATABASE_ERRORS",
    "TRANSIENT_ERRORS",
    "Cursor",
    "Database",
    "PostgresDatabase",
    "Row",
    "SqliteDatabase",
    "StoreUnavailable",
    "connect",
    "is_transient",
    "is_url",
    "redact_secret",
    "redact_url",
]

log = logging.getLogger("monitor.alerts.store")
T = TypeVar("T")


class StoreUnavailable(StoreError):
    """The store's database cannot be reached, or the connection broke during a call (transient).

    The message never holds a password. The next call opens a new connection.
    """


#: What a failing database raises, whichever it is (``except DATABASE_ERRORS``).
DATABASE_ERRORS: Final[tuple[type[Exception], ...]] = (sqlite3.Error, psycopg.Error, StoreUnavailable)
#: Exception types that are always transient (see :func:`is_transient` for the rest).
TRANSIENT_ERRORS: Final[tuple[type[Exception], ...]] = (
    StoreUnavailable,
    psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure,
    psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled,
    psycopg.errors.IdleInTransactionSessionTimeout,
    psycopg.errors.AdminShutdown, psycopg.errors.CrashShutdown, psycopg.errors.CannotConnectNow,
)
# SQLSTATE classes that are transient: 08 connection exception, 40 transaction rollback
# (deadlock, serialization), 53 insufficient resources (disk full, out of memory, too
# many connections), 57 operator intervention (statement timeout, shutdown), 58 system
# error (I/O).
_TRANSIENT_SQLSTATE_CLASSES: Final = frozenset({"08", "40", "53", "57", "58"})
# Single SQLSTATEs that are transient: lock_not_available, object_in_use,
# idle_in_transaction_session_timeout, transaction_timeout.
_TRANSIENT_SQLSTATES: Final = frozenset({"55P03", "55006", "25P03", "25P04"})
# SQLite primary result codes that are transient: BUSY, LOCKED, NOMEM, INTERRUPT,
# IOERR, FULL, CANTOPEN, PROTOCOL.
_TRANSIENT_SQLITE_CODES: Final = frozenset({5, 6, 7, 9, 10, 13, 14, 15})

_URL_SCHEMES: Final = ("postgresql://", "postgres://")
# Anything that looks like a URL: a scheme (RFC 3986) then "://".
_ANY_URL: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# SQL that only SQLite runs; refused for PostgreSQL with the portable spelling.
_SQLITE_ONLY: Final = re.compile(r"\bINSERT\s+OR\s+(IGNORE|REPLACE)\b|\bPRAGMA\b", re.IGNORECASE)
# Owner read/write only: the store holds client names, card references and manager contacts.
_PRIVATE: Final = 0o600


def is_transient(error: BaseException) -> bool:
    """Whether the store call that raised ``error`` may succeed if it is simply made again.

    ``True`` for :data:`TRANSIENT_ERRORS`, a psycopg error of a transient SQLSTATE
    class (or a client-side connection failure, which has none), and an SQLite
    busy/locked/I/O/full error. ``False`` for anything else, including errors that
    are not the database's.
    """
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _TRANSIENT_SQLITE_CODES
    if isinstance(error, psycopg.Error):
        state = error.sqlstate
        if state is None:  # raised by the client: the connection failed or broke
            return isinstance(error, psycopg.OperationalError)
        return state[:2] in _TRANSIENT_SQLSTATE_CLASSES or state in _TRANSIENT_SQLSTATES
    return False


class Row(Protocol):
    """A result row: ``row["column"]`` or ``row[0]``."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    """The result of :meth:`Database.execute`."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


def is_url(location: str | Path) -> bool:
    """Whether a store location is a URL (``scheme://...``) rather than a file path.

    Any scheme counts, so that ``postgresql+psycopg://...`` is refused as a URL (by
    :func:`connect`) instead of being taken for a file name with a password in it.
    """
    return isinstance(location, str) and _ANY_URL.match(location) is not None


class Database(ABC):
    """One connection of the alert store, SQLite or PostgreSQL.

    Outside :meth:`transaction` every statement commits on its own.
    """

    dialect: ClassVar[Literal["sqlite", "postgresql"]]
    #: Appended to a ``SELECT`` that reads rows to change: locks them until commit.
    for_update: ClassVar[str]
    #: Appended to a ``SELECT`` that claims rows: locks them and skips rows already locked.
    for_update_skip_locked: ClassVar[str]

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement with ``?`` placeholders; return its cursor."""

    @abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per parameter row."""

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """Hold one write transaction: commit on exit, roll back on an exception."""

    @abstractmethod
    def lock_keys(self, keys: Iterable[str]) -> None:
        """Inside a transaction, lock names until it ends, in sorted order.

        Writers that lock several rows take the names of those rows first: one
        order for every instance, so they wait for each other and never deadlock.
        """

    @abstractmethod
    def interrupt(self) -> None:
        """From any thread: make the statement running now, and every later one, fail at once.

        They raise :class:`StoreUnavailable` (or SQLite's ``interrupted``); for the
        store's shutdown, so that it never waits on a lock or a silent server.
        """

    @abstractmethod
    def close(self) -> None:
        """Close the connection; committed data stays."""


def _create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 whatever the umask; warn if it exists open to others."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE)
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("alert store %s is readable by other users (mode %o): chmod 600 it",
                        path, stat.S_IMODE(mode))
        return
    try:
        os.fchmod(fd, _PRIVATE)  # the umask only removes bits; this makes it exact
    finally:
        os.close(fd)


class SqliteDatabase(Database):
    """A SQLite file in WAL mode with ``synchronous=FULL``; ``":memory:"`` for throwaway use.

    A new file is created private (mode 0600, whatever the umask); SQLite gives its
    ``-wal`` and ``-shm`` files the same mode. An existing file keeps its mode (a
    warning names one that others can read).

    Args:
        path: the database file; parent directories are created.
    """

    dialect = "sqlite"
    for_update = ""
    for_update_skip_locked = ""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._interrupted = False
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            _create_private(Path(self.path))
        self.raw = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.raw.row_factory = sqlite3.Row
        self.raw.execute("PRAGMA journal_mode=WAL")
        self.raw.execute("PRAGMA synchronous=FULL")
        self.raw.execute("PRAGMA foreign_keys=ON")
        self.raw.execute("PRAGMA busy_timeout=5000")

    def _check(self) -> None:
        if self._interrupted:
            raise StoreUnavailable("the alert store is closing")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        self._check()
        return self.raw.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._check()
        self.raw.executemany(sql, rows)

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        # IMMEDIATE: take the write lock at BEGIN, so two processes never both read
        # a row and then both change it.
        self._check()
        self.raw.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            with suppress(sqlite3.Error):  # an interrupted statement may have rolled it back
                self.raw.execute("ROLLBACK")
            raise
        self.raw.execute("COMMIT")

    def lock_keys(self, keys: Iterable[str]) -> None:
        pass  # the BEGIN IMMEDIATE transaction already holds the whole file

    def interrupt(self) -> None:
        self._interrupted = True
        self.raw.interrupt()

    def close(self) -> None:
        self.raw.close()

    def __repr__(self) -> str:
        return f"SqliteDatabase(path={self.path!r})"


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
    transaction is the store's decision (``_retried``), and the caller's.

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
        return self._run(lambda conn: conn.execute(query, values))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        query, values = _pg_sql(sql), [tuple(row) for row in rows]
        if not values:
            return

        def run(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cursor:
                cursor.executemany(query, values)

        self._run(run)

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        # BEGIN/COMMIT are statements like any other: the answer deadline covers them.
        self.execute("BEGIN")
        self._in_transaction = True
        try:
            yield self
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
