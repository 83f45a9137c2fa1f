"""The store's sign-in tokens and sessions, on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.alerts.store import AlertStore

NOW = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)


def test_a_sign_in_token_is_used_once(store_location: Path | str) -> None:
    """The first use of a token ID is recorded; every later use, from any instance, is refused."""
    with AlertStore(store_location) as store, AlertStore(store_location) as other:
        expires = NOW + timedelta(minutes=15)
        assert store.use_sign_in_token("tok-1", "RM-017", expires_at=expires, now=NOW)
        assert not store.use_sign_in_token("tok-1", "RM-017", expires_at=expires, now=NOW)
        assert not other.use_sign_in_token("tok-1", "RM-017", expires_at=expires, now=NOW)
        assert other.use_sign_in_token("tok-2", "RM-017", expires_at=expires, now=NOW)


def test_sessions_expire_and_are_revoked(store_location: Path | str) -> None:
    """A stored session is found until it expires or is revoked, alone or with all of its manager's."""
    with AlertStore(store_location) as store:
        later = NOW + timedelta(hours=12)
        store.open_session("h-1", "RM-017", created_at=NOW, expires_at=later)
        store.open_session("h-2", "RM-017", created_at=NOW, expires_at=later)
        store.open_session("h-3", "RM-042", created_at=NOW, expires_at=later)
        found = store.find_session("h-1", now=NOW)
        assert found is not None and found.manager_id == "RM-017" and found.expires_at == later
        assert store.find_session("h-1", now=later) is None  # expired
        assert store.find_session("unknown", now=NOW) is None
        assert store.revoke_session("h-1", now=NOW)
        assert not store.revoke_session("h-1", now=NOW)
        assert store.find_session("h-1", now=NOW) is None
        assert store.revoke_manager_sessions("RM-017", now=NOW) == 1
        assert store.find_session("h-2", now=NOW) is None
        assert store.find_session("h-3", now=NOW) is not None  # another manager's stays


def test_expired_rows_are_purged(store_location: Path | str) -> None:
    """Purging deletes used tokens and sessions past their expiry and keeps the live ones."""
    with AlertStore(store_location) as store:
        store.use_sign_in_token("old", "RM-017", expires_at=NOW, now=NOW - timedelta(minutes=1))
        store.use_sign_in_token("new", "RM-017", expires_at=NOW + timedelta(minutes=15), now=NOW)
        store.open_session("h-old", "RM-017", created_at=NOW - timedelta(days=1), expires_at=NOW)
        store.open_session("h-new", "RM-017", created_at=NOW, expires_at=NOW + timedelta(hours=1))
        assert store.purge_expired_sign_ins(now=NOW + timedelta(seconds=1)) == 2
        assert not store.use_sign_in_token("new", "RM-017", expires_at=NOW, now=NOW)
        assert store.find_session("h-new", now=NOW) is not None


def test_one_store_serves_sign_ins_from_many_threads(store_location: Path | str) -> None:
    """Sign-ins and sessions written from many threads at once through one store all land, none fails.

    The API runs each call in a thread while the pipeline and the delivery workers use
    the same connection: every write must take the store's lock (the demo once answered
    a sign-in with a 500 when two transactions met on the shared SQLite connection).
    """
    threads, per_thread = 6, 25
    expires = NOW + timedelta(minutes=15)

    def sign_in(worker: int) -> int:
        used = 0
        for n in range(per_thread):
            used += store.use_sign_in_token(f"tok-{worker}-{n}", "RM-017", expires_at=expires, now=NOW)
            store.open_session(f"h-{worker}-{n}", "RM-017", created_at=NOW, expires_at=expires)
            assert store.find_session(f"h-{worker}-{n}", now=NOW) is not None
        return used

    with AlertStore(store_location) as store, ThreadPoolExecutor(threads) as pool:
        assert sum(pool.map(sign_in, range(threads))) == threads * per_thread
        assert store.revoke_manager_sessions("RM-017", now=NOW) == threads * per_thread
