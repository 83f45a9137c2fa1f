"""`cardmon workspace revoke | purge`: sign a person out everywhere, delete expired sign-ins, from the shell."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from monitor.alerts.store import AlertStore
from monitor.cli import app as cli_app


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli_app, ["workspace", *args])
    return result.exit_code, result.output.strip()


def test_revoke_signs_a_manager_out_of_every_session_and_leaves_others(store_location: Path | str) -> None:
    """Every live session of the manager is revoked and counted; another manager's stays; a second run revokes none."""
    now = datetime.now(UTC)
    with AlertStore(store_location) as store:
        for session_hash, manager_id in (("h-1", "RM-017"), ("h-2", "RM-017"), ("h-3", "RM-042")):
            store.open_session(session_hash, manager_id, created_at=now, expires_at=now + timedelta(hours=1))
    assert _cli("revoke", "RM-017", "--store", str(store_location)) == (0, "revoked 2 session(s) of RM-017")
    assert _cli("revoke", "RM-017", "--store", str(store_location)) == (0, "revoked 0 session(s) of RM-017")
    with AlertStore(store_location) as store:
        assert store.find_session("h-1", now=now) is None
        assert store.find_session("h-3", now=now) is not None


def test_purge_deletes_only_expired_rows(store_location: Path | str) -> None:
    """Used links and sessions past their expiry go; live ones stay."""
    now = datetime.now(UTC)
    with AlertStore(store_location) as store:
        store.use_sign_in_token("t-old", "RM-017", expires_at=now - timedelta(minutes=1), now=now)
        store.open_session("h-live", "RM-017", created_at=now, expires_at=now + timedelta(hours=1))
    assert _cli("purge", "--store", str(store_location)) == (
        0, "purged 1 expired sign-in link(s) and session(s)")
    with AlertStore(store_location) as store:
        assert store.find_session("h-live", now=now) is not None


def test_a_missing_store_exits_1_without_creating_one(tmp_path: Path) -> None:
    """A typo in the store path is refused, and no file appears."""
    code, output = _cli("revoke", "RM-017", "--store", str(tmp_path / "typo.db"))
    assert code == 1 and "no alert store at" in output
    assert not (tmp_path / "typo.db").exists()
