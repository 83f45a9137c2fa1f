"""Files that hold alerts are created private (0600) whatever the umask: the SQLite store, its WAL, the JSON Lines sink."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.alerts.delivery.channels import JsonLinesChannel
from monitor.alerts.messages.alert import AlertMessage
from monitor.alerts.store import AlertStore
from monitor.domain import VipFailure

T0 = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o000, 0o022, 0o002])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under a permissive, the usual and a group-writable umask."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def test_a_new_sqlite_store_and_its_wal_are_private(umask: int, tmp_path: Path,
                                                     make_failure: Callable[..., VipFailure]) -> None:
    """The store file and the -wal and -shm files SQLite makes beside it are 0600 under any umask."""
    path = tmp_path / "var" / "alerts.db"
    with AlertStore(path) as store:
        store.record([make_failure("ev-0", T0)])
        files = {p.name: _mode(p) for p in path.parent.iterdir()}
    assert {"alerts.db", "alerts.db-wal", "alerts.db-shm"} <= set(files)
    assert set(files.values()) == {0o600}, files


def test_an_existing_store_open_to_others_is_named_in_a_warning(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """A store file others can read (made by an older cardmon, or by hand) is reported, not silently used."""
    path = tmp_path / "alerts.db"
    AlertStore(path).close()
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING), AlertStore(path):
        pass
    assert f"alert store {path} is readable by other users (mode 644): chmod 600 it" in caplog.text


async def test_the_json_lines_sink_file_is_private(umask: int, tmp_path: Path) -> None:
    """The jsonl sink (and fallback) file is created 0600 under any umask, and appends keep it so."""
    path = tmp_path / "var" / "alerts.jsonl"
    channel = JsonLinesChannel(path)
    for n in range(2):
        await channel.send(AlertMessage(alert_id=f"al-{n}", subject="s", text="t", payload={"n": n}))
    assert _mode(path) == 0o600
    assert path.read_text(encoding="utf-8").splitlines() == ['{"n":0}', '{"n":1}']
