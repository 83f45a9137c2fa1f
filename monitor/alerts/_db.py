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

A :class:`Database` is not thread-safe: the store guards it with its lock.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, Protocol
from urllib.parse import unquote

import psycopg

__all__ = [
    "DATABASE_ERRORS",
    "TRANSIENT_ERRORS",
    "Cursor",
    "Database",
    "PostgresDatabase",
    "Row",
    "SqliteDatabase",
    "connect",
    "is_url",
    "redact_secret",
    "redact_url",
]

#: What a failing database raises, whichever it is (``except DATABASE_ERRORS``).
DATABASE_ERRORS: Final[tuple[type[Exception], ...]] = (sqlite3.Error, psycopg.Error)
#: Aborted transactions that succeed when run again (PostgreSQL broke a deadlock).
TRANSIENT_ERRORS: Final[tuple[type[Exception], ...]] = (
    psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)

_URL_SCHEMES: Final = ("postgresql://", "postgres://")
# Anything that looks like a URL: a scheme (RFC 3986) then "://".
_ANY_URL: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# SQL that only SQLite runs; refused for PostgreSQL with the portable spelling.
_SQLITE_ONLY: Final = re.compile(r"\bINSERT\s+OR\s+(IGNORE|REPLACE)\b|\bPRAGMA\b", re.IGNORECASE)
# Seconds to wait for the PostgreSQL server when connecting.
_CONNECT_TIMEOUT_SECONDS: Final = 10


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


def _userinfo(url: str) -> tuple[str, str, str] | None:
    # (scheme://, user, password) of a URL as people type them: everything between
    # "://" and the LAST "@" is the user information, so a password with an unencoded
    # "/", "?", "#" or "@" is still found (urlsplit would stop at the first of them).
    head, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return None
    userinfo = rest.rpartition("@")[0]
    user, colon, password = userinfo.partition(":")
    return (head + sep, user, password) if colon else None


def redact_url(url: str) -> str:
    """Return a store URL fit for a log: its password replaced by ``***``.

    The user information is taken up to the last ``@``, so a password holding an
    unencoded ``/``, ``?``, ``#`` or ``@`` is hidden whole; a ``password=`` query
    parameter is redacted too.
    """
    found = _userinfo(url)
    if found is not None:
        head, user, _ = found
        url = f"{head}{user}:***@{url.partition('://')[2].rpartition('@')[2]}"
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", url)


def redact_secret(text: str, url: str) -> str:
    """Return ``text`` (an error message, say) with the password of ``url`` replaced by ``***``.

    Pieces of a password split by an unencoded ``@``, ``/``, ``?`` or ``#`` (which a
    driver may quote as a host or a path) are hidden too.
    """
    found = _userinfo(url)
    secrets = {found[2]} if found is not None else set()
    secrets |= set(re.findall(r"(?i)[?&]password=([^&#]*)", url))
    for secret in list(secrets):
        secrets |= {unquote(secret), *(piece for piece in re.split(r"[@/?#]", secret) if len(piece) >= 3)}
    for form in sorted(secrets - {""}, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


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
    def close(self) -> None:
        """Close the connection; committed data stays."""


class SqliteDatabase(Database):
    """A SQLite file in WAL mode with ``synchronous=FULL``; ``":memory:"`` for throwaway use.

    Args:
        path: the database file; parent directories are created.
    """

    dialect = "sqlite"
    for_update = ""
    for_update_skip_locked = ""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.raw = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.raw.row_factory = sqlite3.Row
        self.raw.execute("PRAGMA journal_mode=WAL")
        self.raw.execute("PRAGMA synchronous=FULL")
        self.raw.execute("PRAGMA foreign_keys=ON")
        self.raw.execute("PRAGMA busy_timeout=5000")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.raw.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.raw.executemany(sql, rows)

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        # IMMEDIATE: take the write lock at BEGIN, so two processes never both read
        # a row and then both change it.
        self.raw.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.raw.execute("ROLLBACK")
            raise
        self.raw.execute("COMMIT")

    def lock_keys(self, keys: Iterable[str]) -> None:
        pass  # the BEGIN IMMEDIATE transaction already holds the whole file

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
    conditional updates. A connection lost between calls (a server restart, a
    failover) is opened again on the next call outside a transaction.

    Args:
        url: ``postgresql://user[:password]@host[:port]/database[?param=value]``; any
            libpq parameter works, and so do ``PGPASSWORD`` and ``~/.pgpass``.
    """

    dialect = "postgresql"
    # NO KEY UPDATE: the store never changes a key, so a row lock must not block the
    # foreign-key checks (KEY SHARE) of another transaction's inserts.
    for_update = " FOR NO KEY UPDATE"
    for_update_skip_locked = " FOR NO KEY UPDATE SKIP LOCKED"

    def __init__(self, url: str) -> None:
        self._url = url  # may hold the password: never logged (see redact_url)
        self._closed = False
        self._in_transaction = False
        self._conn = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._url, autocommit=True, row_factory=_pg_row_factory,
                               connect_timeout=_CONNECT_TIMEOUT_SECONDS,
                               application_name="cardmon")

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn.closed and not self._closed and not self._in_transaction:
            self._conn = self._connect()
        return self._conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._connection().execute(_pg_sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(row) for row in rows]
        if rows:
            with self._connection().cursor() as cursor:
                cursor.executemany(_pg_sql(sql), rows)

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        conn = self._connection()
        self._in_transaction = True
        try:
            with conn.transaction():
                yield self
        finally:
            self._in_transaction = False

    def lock_keys(self, keys: Iterable[str]) -> None:
        # Transaction-scoped advisory locks on a 64-bit hash of each name; a collision
        # only makes two writers wait for each other.
        for key in sorted(set(keys)):
            self.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (key,))

    def close(self) -> None:
        self._closed = True
        self._conn.close()

    def __repr__(self) -> str:
        return f"PostgresDatabase(url={redact_url(self._url)!r})"


def connect(location: str | Path) -> Database:
    """Open the store's database: a ``postgresql://`` URL, else a SQLite file path.

    Raises:
        sqlite3.Error: the SQLite file cannot be opened.
        psycopg.Error: the PostgreSQL server cannot be reached or refuses the login.
    """
    if is_url(location):
        if not str(location).startswith(_URL_SCHEMES):
            scheme = str(location).partition("://")[0]
            raise psycopg.InterfaceError(
                f"unsupported alert store URL scheme {scheme!r}: use postgresql://user:password@host/db")
        return PostgresDatabase(str(location))
    return SqliteDatabase(location)
