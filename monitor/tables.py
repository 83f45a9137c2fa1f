"""The operator's table files (registries): reading them, and reloading them when they change.

:func:`read_table` reads one CSV or Parquet file (chosen by suffix);
:class:`ReloadingTable` holds the snapshot built from a table's files and rereads
them when one changes (the VIP registry and the terminal registry both use it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

import polars as pl

__all__ = ["ReloadingTable", "read_table"]

log = logging.getLogger(__name__)
S = TypeVar("S")


def read_table(path: Path, *, error: type[ValueError], what: str) -> pl.DataFrame:
    """Read ``path`` as Parquet (``.parquet``, ``.pq``) or as CSV with every column as text.

    Args:
        path: the file.
        error: the exception type to raise (the caller's own, e.g. ``RegistryError``).
        what: how the message names the file, e.g. ``"registry file"``.

    Raises:
        error: the file is missing or polars cannot read it (the message names the path).
    """
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            return pl.read_parquet(path)
        return pl.read_csv(path, infer_schema=False)
    except Exception as cause:  # polars raises several exception types
        raise error(f"cannot read {what} {path}: {str(cause).splitlines()[0][:300]}") from cause


class ReloadingTable(Generic[S]):
    """The current snapshot of a table read from one or more files, swapped whole when a file changes.

    The one hot-reload recipe for operator tables (the VIP registry, the terminal
    registry): :meth:`load` reads the files at start and raises on a bad one;
    :meth:`reload_if_changed` (a scheduled job) rereads them when any file's
    ``(mtime_ns, size)`` changed and never raises: a bad or missing file keeps the
    previous snapshot, counts in :attr:`reload_failures` and is logged once per
    broken version of the files (the line is cut: a parser's hint can quote raw rows).
    A reader of :attr:`current` always sees one consistent snapshot.

    A subclass gives :attr:`what`, :attr:`error`, :meth:`_read`, :meth:`_unreadable`
    and :meth:`_summary`.

    Args:
        paths: the files; all ``None`` = not configured (:attr:`current` stays ``empty``).
        empty: the snapshot before the first load.
    """

    #: How log lines name the table, e.g. ``"VIP registry"``.
    what: ClassVar[str] = "table"
    #: The subclass's error for a bad file (caught by :meth:`reload_if_changed`).
    error: ClassVar[type[Exception]] = ValueError
    #: Where the load and reload-failure lines go (the subclass's module logger).
    logger: ClassVar[logging.Logger] = log

    def __init__(self, paths: Sequence[Path | None], empty: S) -> None:
        self._paths = tuple(paths)
        self._signature: tuple[tuple[int, int], ...] | None = None  # <(mtime_ns, size) per file>
        self._last_failure: tuple[tuple[int, int], ...] | None = None  # files' stat when a reload failed
        self._lock = threading.Lock()
        self.current: S = empty
        self.reload_failures = 0

    @property
    def configured(self) -> bool:
        """Whether every file is given (the table is read from files at all)."""
        return all(path is not None for path in self._paths)

    def _read(self) -> S:
        """Read every file into a new snapshot (raises :attr:`error` on a bad file)."""
        raise NotImplementedError

    def _unreadable(self, error: OSError) -> Exception:
        """The :attr:`error` for a file that is missing or cannot be stat'ed."""
        raise NotImplementedError

    def _summary(self, snapshot: S) -> str:
        """What the load log line says about a snapshot, e.g. ``"3 clients, 1 managers"``."""
        raise NotImplementedError

    def _stat(self) -> tuple[tuple[int, int], ...]:
        stats = []
        for path in self._paths:
            assert path is not None
            info = path.stat()
            stats.append((info.st_mtime_ns, info.st_size))
        return tuple(stats)

    def load(self) -> S:
        """Read the files now and swap the new snapshot in (nothing to read: :attr:`current`).

        Raises:
            error: a file is missing or bad.
        """
        if not self.configured:
            return self.current
        with self._lock:
            try:
                signature = self._stat()
            except OSError as problem:
                raise self._unreadable(problem) from problem
            self.current = self._read()
            self._signature = signature
        self.logger.info("%s loaded: %s", self.what, self._summary(self.current))
        return self.current

    def reload_if_changed(self) -> bool:
        """Reload when any file's mtime or size changed; return whether it reloaded.

        Never raises: a bad or missing file keeps the previous snapshot.
        """
        if not self.configured:
            return False
        try:
            if self._stat() == self._signature:
                return False
            self.load()
            return True
        except (OSError, self.error) as problem:
            self.reload_failures += 1
            try:
                signature: tuple[tuple[int, int], ...] | None = self._stat()
            except OSError:
                signature = None
            if signature != self._last_failure:
                self._last_failure = signature
                self.logger.error("%s reload failed, keeping the previous one: %s", self.what,
                          str(problem).splitlines()[0][:300])
            return False
