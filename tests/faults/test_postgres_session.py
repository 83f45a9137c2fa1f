"""PostgreSQL faults one connection of the alert store meets, on a real server: each is bounded and transient."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from monitor.alerts.delivery.worker import DeliveryWorker
from monitor.alerts.store import AlertStore
from monitor.alerts.store.connection import connect
from monitor.alerts.store.db import StoreUnavailable, is_transient
from monitor.alerts.store.postgres import PostgresDatabase
from monitor.api import build_api, start_api
from monitor.config import PostgresSettings
from tests.faults.tcp_proxy import StallingProxy
from tests.postgres import PostgresServer, running_postgres

# Small bounds, so each fault shows within seconds.
FAST = PostgresSettings(connect_timeout_seconds=2, statement_timeout_seconds=1.0,
                        lock_timeout_seconds=0.5, idle_in_transaction_timeout_seconds=1.0,
                        keepalives_idle_seconds=5, keepalives_interval_seconds=1, keepalives_count=2,
                        tcp_user_timeout_seconds=3.0)
# statement_timeout + the client's 5 s grace, plus room for a loaded machine.
ANSWER_DEADLINE = 1.0 + 5.0


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module alone, which its tests stop and start again."""
    yield from running_postgres()


def test_session_limits_and_keepalives_reach_the_server(postgres: PostgresServer) -> None:
    """Statement, lock and idle-in-transaction timeouts are the session's; keepalives and tcp_user_timeout are libpq's; the URL's own options still apply."""
    db = PostgresDatabase(postgres.new_store_url(), FAST)
    try:
        shown = {name: db.execute(f"SHOW {name}").fetchone()[0] for name in
                 ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
                  "search_path", "application_name")}
        params = db._conn.info.get_parameters()
    finally:
        db.close()
    assert shown["statement_timeout"] == "1s" and shown["lock_timeout"] == "500ms"
    assert shown["idle_in_transaction_session_timeout"] == "1s"
    assert shown["search_path"].startswith("t_")  # the URL's options=-csearch_path=... kept
    assert shown["application_name"] == "cardmon"
    assert (params["keepalives"], params["keepalives_idle"], params["keepalives_interval"],
            params["keepalives_count"], params["connect_timeout"]) == ("1", "5", "1", "2", "2")
    assert params["tcp_user_timeout"] == "3000"


def test_a_parameter_in_the_url_wins_over_the_settings(postgres: PostgresServer) -> None:
    """An operator's lock_timeout and connect_timeout in the URL itself are the ones used."""
    url = postgres.url() + "?connect_timeout=7&options=-c%20lock_timeout%3D1234"
    db = PostgresDatabase(url, FAST)
    try:
        assert db.execute("SHOW lock_timeout").fetchone()[0] == "1234ms"
        assert db._conn.info.get_parameters()["connect_timeout"] == "7"
    finally:
        db.close()


def test_a_held_lock_ends_in_a_transient_lock_timeout(postgres: PostgresServer) -> None:
    """A table another session holds locked makes a write fail with a transient error after lock_timeout, and work once released."""
    url = postgres.new_store_url()
    db = PostgresDatabase(url, FAST)
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    schema = url.rpartition("%3D")[2]
    try:
        with postgres.connect() as admin:
            admin.execute("BEGIN")
            admin.execute(f"LOCK TABLE {schema}.t IN ACCESS EXCLUSIVE MODE")
            began = time.monotonic()
            with pytest.raises(psycopg.errors.LockNotAvailable) as caught:
                db.execute("INSERT INTO t (k) VALUES (?)", ("a",))
            waited = time.monotonic() - began
            admin.execute("ROLLBACK")
        assert is_transient(caught.value)
        assert 0.4 < waited < 3.0, waited
        db.execute("INSERT INTO t (k) VALUES (?)", ("a",))  # same connection, lock gone
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    finally:
        db.close()


def test_a_frozen_backend_is_dropped_within_the_answer_deadline_and_replaced(postgres: PostgresServer) -> None:
    """A server process that stops answering (SIGSTOP) makes the call fail as StoreUnavailable within statement_timeout + 5 s; the next call gets a new connection."""
    db = PostgresDatabase(postgres.new_store_url(), FAST)
    frozen = int(db.execute("SELECT pg_backend_pid()").fetchone()[0])
    os.kill(frozen, signal.SIGSTOP)
    try:
        began = time.monotonic()
        with pytest.raises(StoreUnavailable, match="no answer from PostgreSQL within 6 s") as caught:
            db.execute("SELECT 1")
        waited = time.monotonic() - began
        assert is_transient(caught.value)
        assert ANSWER_DEADLINE - 0.5 < waited < ANSWER_DEADLINE + 3, waited
        assert int(db.execute("SELECT pg_backend_pid()").fetchone()[0]) != frozen
    finally:
        os.kill(frozen, signal.SIGCONT)
        db.close()


def test_a_half_open_connection_is_dropped_and_replaced_once_the_path_is_back(postgres: PostgresServer) -> None:
    """Behind a proxy that goes silent without closing, a call fails as StoreUnavailable within the deadline, reconnecting fails fast while the path is dead, and the next call after it returns works."""
    with StallingProxy("127.0.0.1", postgres.port) as proxy:
        url = postgres.new_store_url().replace(f":{postgres.port}/", f":{proxy.port}/")
        db = PostgresDatabase(url, FAST)
        try:
            assert db.execute("SELECT 1").fetchone()[0] == 1
            proxy.stall()
            began = time.monotonic()
            with pytest.raises(StoreUnavailable, match="no answer"):
                db.execute("SELECT 2")
            assert time.monotonic() - began < ANSWER_DEADLINE + 3
            began = time.monotonic()
            with pytest.raises(StoreUnavailable, match="cannot reach"):  # connect_timeout: 2 s
                db.execute("SELECT 3")
            assert time.monotonic() - began < 2 + 3
            proxy.resume()
            assert db.execute("SELECT 4").fetchone()[0] == 4
        finally:
            db.close()


def test_a_session_idle_in_a_transaction_is_ended_by_the_server_and_frees_its_locks(postgres: PostgresServer) -> None:
    """A client stalled inside a transaction loses its session after idle_in_transaction_timeout; its lock is freed and its error is transient."""
    url = postgres.new_store_url()
    db = PostgresDatabase(url, FAST)
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    schema = url.rpartition("%3D")[2]
    try:
        with pytest.raises(Exception) as caught, db.transaction() as conn:
            conn.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
            with postgres.connect() as admin:
                admin.execute("SET lock_timeout = '5s'")
                began = time.monotonic()
                admin.execute(f"SELECT count(*) FROM {schema}.t")  # waits until the server ends our session
                assert time.monotonic() - began < 4
            conn.execute("SELECT 1")
        assert is_transient(caught.value), repr(caught.value)
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 0  # a new session
    finally:
        db.close()


def test_a_stopped_server_is_unavailable_at_once_and_back_by_itself(own_postgres: PostgresServer) -> None:
    """While the server is down every call fails fast as StoreUnavailable (no hang); once it is up the same object works again."""
    db = PostgresDatabase(own_postgres.new_store_url(), FAST)
    try:
        db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
        own_postgres.halt()
        for _ in range(3):
            began = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                db.execute("INSERT INTO t (k) VALUES (?)", ("a",))
            assert time.monotonic() - began < 2.5
            assert is_transient(caught.value)
            assert own_postgres.password not in str(caught.value)
        own_postgres.resume()
        db.execute("INSERT INTO t (k) VALUES (?)", ("a",))
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    finally:
        own_postgres.resume()
        db.close()


def test_the_store_retries_a_moment_then_raises_transient(own_postgres: PostgresServer,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """With the server down, a store write is tried three times within seconds, then raises StoreUnavailable for the caller's backoff."""
    store = AlertStore(own_postgres.new_store_url(), postgres=FAST)
    own_postgres.halt()
    try:
        began = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.claim_due(datetime.now(UTC))
        assert time.monotonic() - began < 6
        assert caplog.text.count("claim_due failed (StoreUnavailable), trying again") == 2
    finally:
        own_postgres.resume()
        store.close()


def test_close_interrupts_a_call_waiting_on_a_lock(postgres: PostgresServer) -> None:
    """Closing the store from another thread ends a call blocked on a lock at once (shutdown never waits on the database)."""
    url = postgres.new_store_url()
    slow = PostgresSettings(lock_timeout_seconds=60, statement_timeout_seconds=60)
    store = AlertStore(url, postgres=slow)
    schema = url.rpartition("%3D")[2]
    outcome: list[BaseException] = []

    def claim() -> None:
        try:
            store.claim_due(datetime.now(UTC))
        except BaseException as error:  # noqa: BLE001 — handed to the test
            outcome.append(error)

    with postgres.connect() as admin:
        admin.execute("BEGIN")
        admin.execute(f"LOCK TABLE {schema}.deliveries IN ACCESS EXCLUSIVE MODE")
        worker = threading.Thread(target=claim)
        worker.start()
        deadline = time.monotonic() + 10
        while not any(row[0] == "Lock" for row in admin.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE application_name = 'cardmon'")):
            assert time.monotonic() < deadline, "the claim never waited on the lock"
            time.sleep(0.05)
        began = time.monotonic()
        store.close()
        closed_in = time.monotonic() - began
        worker.join(timeout=5)
        admin.execute("ROLLBACK")
    assert closed_in < 2, closed_in
    assert len(outcome) == 1 and isinstance(outcome[0], StoreUnavailable)


def test_sqlite_busy_is_transient_and_a_constraint_is_not(tmp_path: Path) -> None:
    """A locked SQLite file is a transient error; a broken constraint is a permanent one."""
    path = tmp_path / "t.db"
    db = connect(path)
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    db.execute("INSERT INTO t (k) VALUES ('a')")
    with pytest.raises(sqlite3.IntegrityError) as constraint:
        db.execute("INSERT INTO t (k) VALUES ('a')")
    with closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        db.execute("PRAGMA busy_timeout=0")
        with pytest.raises(sqlite3.OperationalError) as busy, db.transaction():
            pass
        other.execute("ROLLBACK")
    db.close()
    assert is_transient(busy.value) and not is_transient(constraint.value)


def test_a_nul_byte_is_a_permanent_error(postgres: PostgresServer) -> None:
    """Text PostgreSQL cannot store (a NUL byte) is permanent: running it again never helps."""
    db = PostgresDatabase(postgres.new_store_url(), FAST)
    try:
        db.execute("CREATE TABLE t (k TEXT)")
        with pytest.raises(psycopg.DataError) as caught:
            db.execute("INSERT INTO t (k) VALUES (?)", ("card\x00ref",))
        assert not is_transient(caught.value)
        assert db.execute("SELECT 1").fetchone()[0] == 1  # the connection is fine
    finally:
        db.close()


async def test_the_api_answers_503_while_the_store_is_down_and_200_when_it_is_back(
        own_postgres: PostgresServer) -> None:
    """While PostgreSQL is down the API answers 503 store_unavailable with Retry-After (no traceback, no password); then 200 again."""
    token = "api-token-for-the-outage-test"
    store = AlertStore(own_postgres.new_store_url(), postgres=FAST)
    server = await start_api(build_api(store, api_token=token))
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            assert (await client.get("/alerts", headers=headers)).status_code == 200
            await asyncio.to_thread(own_postgres.halt)
            try:
                down = await client.get("/alerts", headers=headers)
            finally:
                await asyncio.to_thread(own_postgres.resume)
            up = await client.get("/alerts", headers=headers)
    finally:
        await server.close()
        store.close()
    assert down.status_code == 503 and down.headers["Retry-After"] == "5"
    assert down.json()["error"] == "store_unavailable"
    assert own_postgres.password not in down.text and "Traceback" not in down.text
    assert up.status_code == 200


async def test_the_delivery_worker_backs_off_while_the_store_is_down(own_postgres: PostgresServer) -> None:
    """With the store down, the worker's passes come ever further apart (not every poll interval), and it never dies."""
    store = AlertStore(own_postgres.new_store_url(), postgres=FAST)
    claims: list[float] = []
    claim_due = store.claim_due

    def counted(*args: Any, **kwargs: Any) -> Any:
        claims.append(time.monotonic())
        return claim_due(*args, **kwargs)

    store.claim_due = counted  # type: ignore[method-assign]
    worker = DeliveryWorker(store, {}, poll_interval=0.01)
    stop = asyncio.Event()
    await asyncio.to_thread(own_postgres.halt)
    try:
        task = asyncio.create_task(worker.run(stop))
        await asyncio.sleep(4.0)
        stop.set()
        await asyncio.wait_for(task, timeout=10)
    finally:
        await asyncio.to_thread(own_postgres.resume)
        store.close()
    # At a fixed 10 ms poll it would be ~400 passes; doubling pauses make it about a dozen.
    assert 3 <= len(claims) <= 15, len(claims)
    gaps = [b - a for a, b in itertools.pairwise(claims)]
    assert gaps[-1] > gaps[0]
