"""The alert store's SQLite adapter: one file in WAL mode, written one transaction at a time.

The contract it fulfils (SQL written once for both databases, transient or permanent
errors) is :mod:`monitor.alerts.store.db`; the store guards it with its lock.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Final

from monitor.alerts.store.db import Cursor, Database, StoreUnavailable

__all__ = ["SqliteDatabase"]

log = logging.getLogger("monitor.alerts.store")
# Owner read/write only: the store holds client names, card references and manager contacts.
_PRIVATE: Final = 0o600


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
