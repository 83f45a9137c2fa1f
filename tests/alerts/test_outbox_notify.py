"""Outbox rows committed by one instance wake another instance's delivery worker (PostgreSQL LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from monitor.alerts.delivery.channels import JsonLinesChannel
from monitor.alerts.delivery.worker import DeliveryWorker
from monitor.alerts.store import AlertStore
from monitor.alerts.store.notify import OutboxListener
from monitor.domain import VipFailure
from monitor.testing.fixtures import wait_until
from tests.postgres import PostgresServer, running_postgres

MakeFailure = Callable[..., VipFailure]

pytestmark = pytest.mark.integration


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    """A new, empty alert store in the session's PostgreSQL."""
    return postgres.new_store_url()


@pytest.fixture
def two_stores(url: str) -> Iterator[tuple[AlertStore, AlertStore]]:
    """Two instances' stores on the same PostgreSQL store."""
    first, second = AlertStore(url), AlertStore(url)
    yield first, second
    first.close()
    second.close()


def _listening(store: AlertStore, on_notify: Callable[[], object]) -> OutboxListener:
    listener = store.outbox_listener(on_notify)
    assert listener is not None
    listener.start()
    assert listener.listening.wait(10), "the listener did not LISTEN within 10 s"
    return listener


def test_a_committed_outbox_row_notifies_the_other_instance(
        two_stores: tuple[AlertStore, AlertStore], make_failure: MakeFailure) -> None:
    """A new alert's delivery recorded by one store is announced to a listener of the other store."""
    writer, reader = two_stores
    heard = threading.Event()
    listener = _listening(reader, heard.set)
    heard.clear()  # the call after connecting is not what is tested
    try:
        writer.record([make_failure("ev-notify", datetime.now(UTC))], sinks=["jsonl"], channels=())
        assert heard.wait(10), "no notification within 10 s of the commit"
    finally:
        listener.stop()


def test_a_rolled_back_transaction_notifies_nobody(url: str, two_stores: tuple[AlertStore, AlertStore]) -> None:
    """A NOTIFY sent in a transaction that rolls back never reaches a listener (only committed rows wake)."""
    _, reader = two_stores
    heard = threading.Event()
    listener = _listening(reader, heard.set)
    heard.clear()
    try:
        with psycopg.connect(url, autocommit=True) as conn, pytest.raises(RuntimeError):  # noqa: PT012
            with conn.transaction():
                conn.execute("NOTIFY cardmon_outbox")
                raise RuntimeError("roll back")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("NOTIFY cardmon_outbox")  # a committed one, to know the first had its chance
        assert heard.wait(10)
        heard.clear()
        assert not heard.wait(0.5), "a second notification arrived: the rolled-back one was sent"
    finally:
        listener.stop()


def test_sqlite_store_has_no_listener(tmp_path: Path) -> None:
    """A SQLite store is one process's: it offers no outbox listener (the in-process wake covers it)."""
    with AlertStore(tmp_path / "alerts.db") as store:
        assert store.outbox_listener(lambda: None) is None


async def test_another_instances_alert_is_delivered_without_waiting_for_the_poll(
        two_stores: tuple[AlertStore, AlertStore], tmp_path: Path, make_failure: MakeFailure) -> None:
    """Two workers polling every 60 s: an alert stored by instance A is sent once, within seconds, by a woken worker."""
    sink = tmp_path / "alerts.jsonl"
    channel = JsonLinesChannel(sink)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    workers = [DeliveryWorker(store, {"jsonl": channel}, poll_interval=60.0) for store in two_stores]
    listeners = [_listening(store, lambda worker=worker: loop.call_soon_threadsafe(worker.wake))
                 for store, worker in zip(two_stores, workers, strict=True)]
    tasks = [asyncio.create_task(worker.run(stop)) for worker in workers]
    try:
        await asyncio.sleep(0.3)  # the first, empty passes are over; both now sleep 60 s
        writer = two_stores[0]
        await asyncio.to_thread(writer.record, [make_failure("ev-remote", datetime.now(UTC))],
                                sinks=["jsonl"], channels=())
        # Nobody calls wake() in-process: only the notification can end the 60 s sleep.
        await wait_until(lambda: sink.exists() and bool(sink.read_text().strip()), timeout=10.0,
                         what="the alert in the sink")
        await asyncio.sleep(0.3)  # a second send, if any, would land now
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for listener in listeners:
            await asyncio.to_thread(listener.stop)
    assert len(sink.read_text().splitlines()) == 1


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module alone, which a test stops and starts again."""
    yield from running_postgres()


def test_the_listener_reconnects_after_an_outage_and_wakes_its_worker(
        own_postgres: PostgresServer, make_failure: MakeFailure) -> None:
    """With the server stopped and started again, the listener listens again, wakes its worker once, then hears new rows."""
    url = own_postgres.new_store_url()
    heard = threading.Event()
    with AlertStore(url) as reader:
        listener = _listening(reader, heard.set)
        try:
            heard.clear()
            own_postgres.halt()
            deadline = time.monotonic() + 15
            while listener.listening.is_set():
                assert time.monotonic() < deadline, "the listener did not notice the outage"
                time.sleep(0.05)
            own_postgres.resume()
            assert listener.listening.wait(30), "the listener did not come back"
            assert heard.wait(5), "rows committed during the outage: the worker must be woken once"
            heard.clear()
            with AlertStore(url) as writer:
                writer.record([make_failure("ev-after", datetime.now(UTC))], sinks=["jsonl"], channels=())
            assert heard.wait(10), "no notification after the reconnection"
        finally:
            listener.stop()
