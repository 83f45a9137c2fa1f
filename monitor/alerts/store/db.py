"""The alert store's database contract: one small interface over SQLite and PostgreSQL, and its errors.

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

The two adapters are :mod:`monitor.alerts.store.sqlite` and
:mod:`monitor.alerts.store.postgres`; :func:`monitor.alerts.store.connection.connect`
opens the one a location names.

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

import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, Protocol

import psycopg

from monitor.errors import StoreError

__all__ = [
    "DATABASE_ERRORS",
    "TRANSIENT_ERRORS",
    "Cursor",
    "Database",
    "Row",
    "StoreUnavailable",
    "is_transient",
    "is_url",
]



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

# Anything that looks like a URL: a scheme (RFC 3986) then "://".
_ANY_URL: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


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
