"""The one hot-reload recipe for table files: swap on change, keep the last good snapshot on a bad file."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import polars as pl
import pytest

from monitor.errors import ConfigurationError
from monitor.tables import ReloadingTable, read_table


class _TableError(ConfigurationError):
    """A bad test table."""


class _Rows(ReloadingTable[pl.DataFrame]):
    """A table of ``id`` rows from one CSV file."""

    what = "test table"
    error = _TableError

    def __init__(self, path: Path | None) -> None:
        super().__init__((path,), pl.DataFrame({"id": []}, schema={"id": pl.String}))

    def _read(self) -> pl.DataFrame:
        assert self._paths[0] is not None
        frame = read_table(self._paths[0], error=_TableError, what="test table")
        if "id" not in frame.columns:
            raise _TableError(f"{self._paths[0]}: no id column")
        return frame

    def _unreadable(self, error: OSError) -> Exception:
        return _TableError(f"test table not found: {error.filename}")

    def _summary(self, snapshot: pl.DataFrame) -> str:
        return f"{snapshot.height} rows"


def _write(path: Path, text: str, tick: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(tick * 1_000_000_000, tick * 1_000_000_000))  # a distinct mtime each write


def test_a_changed_file_is_swapped_in_and_an_unchanged_one_is_not_reread(tmp_path: Path) -> None:
    """reload_if_changed rereads only when the file's mtime or size moved."""
    path = tmp_path / "rows.csv"
    _write(path, "id\na\n", 1)
    table = _Rows(path)
    assert table.load().height == 1
    assert table.reload_if_changed() is False
    _write(path, "id\na\nb\n", 2)
    assert table.reload_if_changed() is True
    assert table.current.get_column("id").to_list() == ["a", "b"]


def test_a_bad_file_keeps_the_last_snapshot_and_is_logged_once(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """A broken rewrite keeps the previous rows, counts every failed try, and logs once per broken version."""
    path = tmp_path / "rows.csv"
    _write(path, "id\na\n", 1)
    table = _Rows(path)
    table.load()
    _write(path, "name\nx\n", 2)
    with caplog.at_level(logging.ERROR):
        assert table.reload_if_changed() is False
        assert table.reload_if_changed() is False
    assert table.reload_failures == 2
    assert table.current.get_column("id").to_list() == ["a"]
    assert [r.getMessage() for r in caplog.records] == [
        f"test table reload failed, keeping the previous one: {path}: no id column"]
    path.unlink()
    assert table.reload_if_changed() is False and table.reload_failures == 3


def test_a_missing_file_at_start_raises_the_tables_error(tmp_path: Path) -> None:
    """load at start raises the subclass's error for a missing file; no path means nothing to read."""
    with pytest.raises(_TableError, match="not found"):
        _Rows(tmp_path / "absent.csv").load()
    empty = _Rows(None)
    assert empty.load().height == 0 and empty.reload_if_changed() is False
