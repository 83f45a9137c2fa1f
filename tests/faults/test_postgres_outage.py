"""The running monitor against PostgreSQL faults mid-stream: nothing lost, nothing sent twice.

Real parts throughout: the embedded broker, a PostgreSQL server of this module's own
(stopped and started again, locked, cut off behind a silent proxy), a real SMTP
server (aiosmtpd) and a real webhook receiver (aiohttp). Each fault hits while events
flow and messages are in flight; afterwards every VIP failure is stored once and every
alert reached its manager's mailbox and webhook exactly once (counted by
``Message-ID`` and ``Idempotency-Key``, the keys a receiver deduplicates on).

The consumer's retry loop (monitor/pipeline/consumer.py) rides out the store's transient
errors with a backoff up to 30 s; the delivery worker pauses its passes and records
a send's outcome once the store is back (monitor/alerts/delivery/worker.py).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller
from prometheus_client import CollectorRegistry

from monitor.alerts.store import AlertStore, window_start_for
from monitor.app import MonitorApp
from monitor.ids import alert_id_for
from monitor.paths import rules_path
from monitor.testing.broker import free_port
from monitor.testing.fixtures import monitor_settings, wait_until
from tests.faults.tcp_proxy import StallingProxy
from tests.helpers import encode, event, write_registry
from tests.postgres import PostgresServer, running_postgres

MANAGERS = 4
WAVE = 10  # clients failing per wave; one failure each, so one alert each
OUTAGE_SECONDS = 60.0
# Small server limits so the faults show within seconds (client deadline: 2 + 5 s).
FAST_POSTGRES = {"connect_timeout_seconds": 2, "statement_timeout_seconds": 2.0,
                 "lock_timeout_seconds": 1.0, "idle_in_transaction_timeout_seconds": 3.0}

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_environment")]


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module alone, which its tests stop, lock and cut off."""
    yield from running_postgres()


def _delay(key: str) -> float:
    """How long the receivers take to answer ``key``: 0.1-1.9 s, fixed per key, spread out."""
    return 0.1 + int(hashlib.sha256(key.encode()).hexdigest()[:4], 16) % 10 * 0.2


@dataclass
class Ledger:
    """What the receivers accepted, by the key a receiver deduplicates on; shared with the SMTP thread."""

    mails: Counter[str] = field(default_factory=Counter)  # <alert_id: mails accepted>
    hooks: Counter[str] = field(default_factory=Counter)  # <alert_id: webhook POSTs accepted>
    in_flight: int = 0  # requests received and not answered yet
    lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self) -> None:
        with self.lock:
            self.in_flight += 1

    def accept(self, counter: Counter[str], alert_id: str) -> None:
        with self.lock:
            self.in_flight -= 1
            counter[alert_id] += 1

    def accepted(self) -> int:
        with self.lock:
            return sum(self.mails.values()) + sum(self.hooks.values())


class Mailbox:
    """aiosmtpd handler: answers 250 after a short delay, counts by alert."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        alert_id = str(message["X-Cardmon-Alert-Id"])
        self.ledger.begin()
        await asyncio.sleep(_delay(alert_id + ":email"))
        self.ledger.accept(self.ledger.mails, alert_id)
        return "250 Message accepted for delivery"


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[Ledger, str, int]]:
    """A slow webhook receiver and SMTP server on 127.0.0.1 sharing one ledger: (ledger, webhook base URL, SMTP port)."""
    ledger = Ledger()

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        key = request.headers["Idempotency-Key"]
        ledger.begin()
        await asyncio.sleep(_delay(key))
        ledger.accept(ledger.hooks, key.removesuffix(":webhook"))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hooks/{manager}", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    controller = Controller(Mailbox(ledger), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield ledger, f"http://127.0.0.1:{runner.addresses[0][1]}", controller.port
    finally:
        controller.stop()
        await runner.cleanup()


@dataclass
class Stream:
    """The running monitor and what the test feeds it."""

    monitor: MonitorApp
    producer: AIOKafkaProducer
    topic: str
    url: str  # the store as the test reaches it (never through the proxy)
    expected: set[str] = field(default_factory=set)  # alert IDs the events must make
    sent_events: int = 0

    async def wave(self, first: int) -> None:
        """One failure of each of ``WAVE`` clients, from client number ``first``."""
        for n in range(first, first + WAVE):
            client, now = f"C-{n:03d}", datetime.now(UTC)
            value = event(f"pg-{self.topic}-{n}", occurred_at=now.isoformat(), customer_id=client,
                          card_ref=f"tok_{n:03d}", terminal_id=f"ATM{n:05d}", response_code="91")
            await self.producer.send_and_wait(self.topic, encode(value), key=value["terminal_id"].encode())
            self.expected.add(alert_id_for(client, window_start_for(now)))
            self.sent_events += 1


StartStream = Callable[..., Awaitable[Stream]]


@pytest.fixture
async def start_stream(kafka_bootstrap: str, unique_name: str, tmp_path: Path,
                       own_postgres: PostgresServer,
                       receivers: tuple[Ledger, str, int]) -> AsyncIterator[StartStream]:
    """``await start_stream(proxy=None)``: a MonitorApp on a fresh store schema of ``own_postgres`` (through ``proxy`` if given), running until the test ends."""
    _, webhook, smtp_port = receivers
    running: list[tuple[asyncio.Event, asyncio.Task[None], AIOKafkaProducer]] = []

    async def start(proxy: StallingProxy | None = None) -> Stream:
        url = own_postgres.new_store_url()
        store_url = url.replace(f":{own_postgres.port}/", f":{proxy.port}/") if proxy else url
        managers = "\n".join(f"M{m},Manager {m},m{m}@bank.example,{webhook}/hooks/M{m},Europe/Paris"
                             for m in range(MANAGERS))
        customers = "\n".join(f"C-{n:03d},Client {n},private,M{n % MANAGERS},tok_{n:03d}"
                              for n in range(3 * WAVE))
        customers_path, managers_path = write_registry(
            tmp_path / "registry", f"customer_id,name,tier,manager_id,card_refs\n{customers}",
            f"manager_id,name,email,webhook_url,timezone\n{managers}")
        rules = yaml.safe_load(rules_path("alerting.yaml").read_text(encoding="utf-8"))
        rules.pop("incidents", None)  # every alert has messages of its own: exact counts
        rules.pop("rate_limit", None)
        policy = tmp_path / "alerting.yaml"
        policy.write_text(yaml.safe_dump(rules), encoding="utf-8")
        settings = monitor_settings(
            tmp_path, kafka_bootstrap, unique_name, vip_registry=(customers_path, managers_path),
            alerting={"store_url": store_url, "postgres": FAST_POSTGRES, "policy_path": policy,
                      "smtp": {"host": "127.0.0.1", "port": smtp_port,
                               "from_address": "cardmon@bank.example"},
                      "retry_for_seconds": 600,
                      "backoff_initial_seconds": 0.2, "backoff_max_seconds": 1.0,
                      "escalation_interval_seconds": 3600},
            health={"consume_status": False},
            api={"enabled": False},
        )
        topic = settings.kafka.topic
        monitor = MonitorApp(settings, metrics_registry=CollectorRegistry())
        stop = asyncio.Event()
        task = asyncio.create_task(monitor.run(stop))
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        running.append((stop, task, producer))
        return Stream(monitor=monitor, producer=producer, topic=topic, url=url)

    try:
        yield start
    finally:
        for stop, task, producer in running:
            await producer.stop()
            stop.set()
            await asyncio.wait_for(task, timeout=60)


def _stored(url: str) -> tuple[int, Counter[str]]:
    """(events stored, outbox rows by status), read straight from the store."""
    with AlertStore(url) as store:
        alerts = store.list_alerts()
        return sum(a.event_count for a in alerts), Counter(d.status for a in alerts for d in a.deliveries)


async def _all_delivered(stream: Stream, ledger: Ledger, timeout: float) -> float:
    """Wait until every expected alert reached both channels; return how long it took."""
    began = time.monotonic()
    await wait_until(lambda: set(ledger.mails) == stream.expected and set(ledger.hooks) == stream.expected,
                     timeout=timeout, what="every alert in the mailbox and at the webhook")
    return time.monotonic() - began


async def _exactly_once(stream: Stream, ledger: Ledger) -> None:
    """Nothing lost, nothing doubled: in the receivers, the events and the outbox."""
    await wait_until(lambda: _stored(stream.url)[1] == Counter({"sent": 2 * len(stream.expected)}),
                     timeout=60, what="every delivery recorded as sent")
    await asyncio.sleep(1.0)  # a stray resend would arrive now
    assert len(stream.expected) == stream.sent_events
    assert ledger.mails == Counter(dict.fromkeys(stream.expected, 1))
    assert ledger.hooks == Counter(dict.fromkeys(stream.expected, 1))
    events, outbox = _stored(stream.url)
    assert events == stream.sent_events
    assert outbox == Counter({"sent": 2 * len(stream.expected)})


@pytest.mark.timeout(300)
async def test_postgresql_stopped_60_s_mid_stream_loses_and_doubles_nothing(
    start_stream: StartStream, receivers: tuple[Ledger, str, int], own_postgres: PostgresServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PostgreSQL stopped for 60 s while alerts are being sent and new failures arrive: afterwards every failure is stored once and every alert reached mail and webhook exactly once."""
    caplog.set_level(logging.INFO)
    ledger = receivers[0]
    stream = await start_stream()
    await stream.wave(0)
    first_wave = set(stream.expected)
    # Stop the server while sends are in flight: their outcome cannot be recorded now.
    await wait_until(lambda: ledger.accepted() >= 3 and ledger.in_flight >= 3, timeout=60,
                     what="the first wave partly sent, partly in flight")
    await asyncio.to_thread(own_postgres.halt)
    halted = time.monotonic()
    try:
        await stream.wave(WAVE)  # failures while the store is down
        await asyncio.sleep(OUTAGE_SECONDS - (time.monotonic() - halted))
        during = set(ledger.mails) | set(ledger.hooks)
    finally:
        await asyncio.to_thread(own_postgres.resume)
    recovered = await _all_delivered(stream, ledger, timeout=120)
    await stream.wave(2 * WAVE)  # and the stream goes on as before
    await _all_delivered(stream, ledger, timeout=60)
    await _exactly_once(stream, ledger)
    assert during <= first_wave  # the second wave really waited for the store
    text = caplog.text
    assert "alert store write failed" in text  # the consumer rode it out...
    assert "the alert store is unavailable" in text  # ...and so did the delivery worker,
    assert "not recorded yet, the alert store is unavailable" in text  # sends accepted in the outage
    assert own_postgres.password not in text
    print(f"\npostgres outage: {OUTAGE_SECONDS:g} s down; every alert delivered {recovered:.1f} s "
          f"after the restart; {sum(ledger.mails.values())} mails, {sum(ledger.hooks.values())} "
          f"webhooks for {len(stream.expected)} alerts")


@pytest.mark.timeout(240)
async def test_a_table_lock_held_by_another_session_is_waited_out(
    start_stream: StartStream, receivers: tuple[Ledger, str, int], own_postgres: PostgresServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the alerts table locked by another session, writes fail on lock_timeout and are retried; once it is released everything goes through exactly once."""
    ledger = receivers[0]
    stream = await start_stream()
    await stream.wave(0)
    await _all_delivered(stream, ledger, timeout=60)
    first_wave = set(stream.expected)
    schema = stream.url.rpartition("%3D")[2]
    with own_postgres.connect() as admin:
        admin.execute("BEGIN")
        admin.execute(f"LOCK TABLE {schema}.alerts IN ACCESS EXCLUSIVE MODE")
        await stream.wave(WAVE)
        await wait_until(lambda: caplog.text.count("LockNotAvailable") >= 2, timeout=30,
                         what="writes failing on the lock timeout")
        while_locked = set(ledger.mails) | set(ledger.hooks)
        admin.execute("ROLLBACK")
    recovered = await _all_delivered(stream, ledger, timeout=90)
    await _exactly_once(stream, ledger)
    assert while_locked == first_wave  # nothing of the second wave got through the lock
    print(f"\nlock held: everything delivered {recovered:.1f} s after the release")


@pytest.mark.timeout(240)
async def test_a_half_open_connection_is_detected_and_replaced(
    start_stream: StartStream, receivers: tuple[Ledger, str, int], own_postgres: PostgresServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Behind a proxy that goes silent without closing, the monitor drops the dead connection within the timeouts, reconnects once the path is back, and loses or doubles nothing."""
    with StallingProxy("127.0.0.1", own_postgres.port) as proxy:
        stream = await start_stream(proxy)
        ledger = receivers[0]
        await stream.wave(0)
        await _all_delivered(stream, ledger, timeout=60)
        proxy.stall()
        stalled = time.monotonic()
        await stream.wave(WAVE)
        await wait_until(lambda: "no answer from PostgreSQL within 7 s" in caplog.text, timeout=30,
                         what="the dead connection dropped by the answer deadline")
        detected = time.monotonic() - stalled
        await wait_until(lambda: "cannot reach the PostgreSQL alert store" in caplog.text, timeout=30,
                         what="a reconnect refused by the silent path")
        proxy.resume()
        recovered = await _all_delivered(stream, ledger, timeout=120)
        await _exactly_once(stream, ledger)
    assert detected < 7 + 5, detected
    print(f"\nhalf-open: dead connection dropped {detected:.1f} s after the stall; everything "
          f"delivered {recovered:.1f} s after the path came back")
