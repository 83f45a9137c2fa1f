"""Crash recovery of the real service: `cardmon run` killed with SIGKILL mid-delivery, then restarted.

What "received" means here: a receiver counts a message as received only when it
answered it successfully on a live connection (HTTP 200 to the webhook, SMTP 250 after
DATA). A request whose connection died before the answer was not accepted: the sender
could not know the outcome and must send it again. A key (``Idempotency-Key``, or the
e-mail's ``Message-ID``) accepted twice is a duplicate.

The kill lands at an instant the test observes: the receivers hold their answers (a
slow receiver, then a gate), many requests are in the middle of being answered, and
every answer already given has been recorded as sent by the monitor. Killing between
a receiver's answer and the monitor's commit of ``sent`` is the one window no sender
can close (see ``monitor/alerts/delivery/worker.py``); the ``Idempotency-Key`` / ``Message-ID``
of the resend lets the receiver recognise it.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller

from monitor.alerts.delivery.channels import verify_webhook_signature
from monitor.alerts.store import window_start_for
from monitor.ids import alert_id_for
from monitor.testing.broker import free_port
from monitor.testing.fixtures import wait_until
from tests.helpers import encode, event, write_registry

CARDMON = Path(sys.executable).parent / "cardmon"
SECRET = "crash-test-hmac-key"
MANAGERS = 4
FIRST_WAVE = 30  # clients failing before the kill
SECOND_WAVE = 10  # clients failing while the monitor is down


def _delay(key: str) -> float:
    """How long the receivers take to answer ``key``: 0.1–2.9 s, fixed per key, spread out."""
    return 0.1 + int(hashlib.sha256(key.encode()).hexdigest()[:4], 16) % 15 * 0.2


@dataclass
class Ledger:
    """What both receivers saw, shared between the test's loop and the SMTP thread."""

    gate: threading.Event = field(default_factory=threading.Event)  # set = answers may go out
    started: Counter[str] = field(default_factory=Counter)  # <key: requests begun>
    accepted: Counter[str] = field(default_factory=Counter)  # <key: successful answers on a live connection>
    dropped: Counter[str] = field(default_factory=Counter)  # <key: requests whose connection died first>
    recipients: dict[str, str] = field(default_factory=dict)  # <key: manager it reached>
    bad_signatures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, key: str) -> None:
        with self.lock:
            self.started[key] += 1

    def finish(self, key: str, recipient: str, *, alive: bool) -> None:
        with self.lock:
            if alive:
                self.accepted[key] += 1
                self.recipients[key] = recipient
            else:
                self.dropped[key] += 1

    def in_flight(self) -> int:
        with self.lock:
            return sum(self.started.values()) - sum(self.accepted.values()) - sum(self.dropped.values())

    async def hold(self, key: str) -> None:
        """Answer late (the slow receiver), and never while the gate is closed."""
        await asyncio.sleep(_delay(key))
        while not self.gate.is_set():
            await asyncio.sleep(0.02)


class SlowMailbox:
    """aiosmtpd handler: takes its time before the 250, and counts only what a live client got."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        key = str(message["Message-ID"])
        self.ledger.begin(key)
        try:
            await self.ledger.hold(key)
        except asyncio.CancelledError:  # aiosmtpd cancels the handler when the client is gone
            self.ledger.finish(key, "", alive=False)
            raise
        alive = server.transport is not None and not server.transport.is_closing()
        self.ledger.finish(key, ",".join(envelope.rcpt_tos), alive=alive)
        return "250 Message accepted for delivery"


async def _start_webhook(ledger: Ledger) -> tuple[web.AppRunner, str]:
    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        key = request.headers["Idempotency-Key"]
        if not verify_webhook_signature(SECRET, body, request.headers.get("X-Cardmon-Timestamp"),
                                        request.headers.get("X-Cardmon-Signature")):
            ledger.bad_signatures.append(key)
        ledger.begin(key)
        try:
            await ledger.hold(key)
        except asyncio.CancelledError:
            ledger.finish(key, "", alive=False)
            raise
        transport = request.transport
        ledger.finish(key, request.match_info["manager"],
                      alive=transport is not None and not transport.is_closing())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hooks/{manager}", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[Ledger, str, int]]:
    """A slow webhook receiver (aiohttp) and a slow SMTP server (aiosmtpd) on 127.0.0.1, one ledger."""
    ledger = Ledger()
    ledger.gate.set()
    controller = Controller(SlowMailbox(ledger), hostname="127.0.0.1", port=free_port())
    controller.start()
    runner, base_url = await _start_webhook(ledger)
    try:
        yield ledger, base_url, controller.port
    finally:
        ledger.gate.set()
        await runner.cleanup()
        controller.stop()


def _sent(store_path: Path) -> set[tuple[str, str]]:
    """(alert ID, channel) of the outbox rows the monitor has committed as sent."""
    with sqlite3.connect(f"file:{store_path}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT alert_id, channel FROM deliveries WHERE status = 'sent'").fetchall()
    return {(alert_id, channel) for alert_id, channel in rows}


def _outbox(store_path: Path) -> Counter[str]:
    """Outbox rows by status."""
    with sqlite3.connect(f"file:{store_path}?mode=ro", uri=True) as conn:
        return Counter(dict(conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status")))


def _key_of(alert_id: str, channel: str) -> str:
    """What the receivers see for a delivery: Idempotency-Key, or the Message-ID."""
    return f"{alert_id}:webhook" if channel == "webhook" else f"<{alert_id}.email@bank.example>"


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_sigkill_mid_delivery_then_restart_delivers_every_alert_once(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, receivers: tuple[Ledger, str, int],
) -> None:
    """`cardmon run` killed by SIGKILL while deliveries are in flight, then restarted, delivers every alert to its manager's e-mail and webhook, none accepted twice."""
    if not CARDMON.is_file():
        pytest.skip(f"cardmon console script not installed at {CARDMON}")
    ledger, base_url, smtp_port = receivers
    clients = [f"C-{n:03d}" for n in range(1, FIRST_WAVE + SECOND_WAVE + 1)]
    manager_of = {client: f"M{n % MANAGERS + 1}" for n, client in enumerate(clients)}
    managers = "\n".join(f"M{m},Manager {m},m{m}@bank.example,{base_url}/hooks/M{m},Europe/Paris"
                         for m in range(1, MANAGERS + 1))
    customers = "\n".join(f"{c},Client {c},private,{manager_of[c]},tok_{c}" for c in clients)
    customers_path, managers_path = write_registry(
        tmp_path / "registry", f"customer_id,name,tier,manager_id,card_refs\n{customers}",
        f"manager_id,name,email,webhook_url,timezone\n{managers}")
    store_path = tmp_path / "alerts.db"
    topic = f"tx.{unique_name}"
    config = tmp_path / "cardmon.yaml"
    config.write_text(
        f"kafka: {{bootstrap_servers: '{kafka_bootstrap}', topic: {topic}, dead_letter_topic: {topic}.dlq,"
        f" group_id: crash-{unique_name}, batch_timeout_ms: 50}}\n"
        f"registry: {{customers_path: {customers_path}, managers_path: {managers_path}}}\n"
        f"alerting:\n  store_path: {store_path}\n"
        f"  smtp: {{host: 127.0.0.1, port: {smtp_port}, from_address: cardmon@bank.example}}\n"
        f"  webhook_signing_secret: {SECRET}\n"
        "  poll_interval_seconds: 0.05\n  retry_for_seconds: 120\n"
        "  backoff_initial_seconds: 0.2\n  backoff_max_seconds: 1\n"
        "  escalation_interval_seconds: 3600\n"
        f"health: {{status_topic: status.{unique_name}, status_dead_letter_topic: status.{unique_name}.dlq}}\n"
        f"metrics: {{host: 127.0.0.1, port: {free_port()}}}\n"
        "api: {enabled: false}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDMON_")}
    now = datetime.now(UTC)
    expected = {(alert_id_for(c, window_start_for(now)), channel): manager_of[c]
                for c in clients for channel in ("email", "webhook")}
    expected_keys = {_key_of(alert_id, channel): manager for (alert_id, channel), manager in expected.items()}

    def start(log_name: str) -> subprocess.Popen[bytes]:
        with (tmp_path / log_name).open("wb") as log:
            return subprocess.Popen([str(CARDMON), "run", "--config", str(config)], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    cwd=tmp_path)

    async def produce(wave: list[str]) -> None:
        for n, client in enumerate(wave):
            value = event(f"ev-{unique_name}-{client}", occurred_at=now.isoformat(), card_ref=f"tok_{client}",
                          response_code="91", terminal_id=f"ATM{n:05d}")
            await producer.send(topic, encode(value), key=value["terminal_id"].encode())
        await producer.flush()

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    first = start("first.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        await produce(clients[:FIRST_WAVE])
        # Kill when a good share was answered and many answers are still pending.
        await wait_until(lambda: sum(ledger.accepted.values()) >= 15 and ledger.in_flight() >= 10,
                         timeout=45, what="deliveries half done, many in flight")
        ledger.gate.clear()  # no receiver answers from here on...
        answered = set(ledger.accepted)
        # ...and every answer given is committed as sent (milliseconds: the accept-to-commit window).
        await wait_until(lambda: answered <= {_key_of(*row) for row in _sent(store_path)},
                         timeout=10, what="the given answers committed as sent")
        in_flight_at_kill = ledger.in_flight()
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        await asyncio.sleep(0.5)  # the receivers notice the dead connections
        ledger.gate.set()
        await wait_until(lambda: ledger.in_flight() == 0, timeout=10, what="held requests to end")
        assert sum(ledger.dropped.values()) >= in_flight_at_kill >= 5, ledger.dropped
        assert answered and set(ledger.accepted) == answered  # nothing was accepted by a dead sender
        await produce(clients[FIRST_WAVE:])  # failures while the monitor is down

        restarted = time.monotonic()
        second = start("second.log")
        await wait_until(lambda: set(ledger.accepted) >= set(expected_keys), timeout=50,
                         what="every alert at its manager after the restart")
        recovery_seconds = time.monotonic() - restarted
        await wait_until(lambda: set(_sent(store_path)) >= set(expected), timeout=10,
                         what="every delivery committed as sent")
        await asyncio.sleep(1.0)  # room for a stray resend to show up
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, (tmp_path / "second.log").read_text()[-3000:]
    finally:
        await producer.stop()
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    duplicates = {key: count for key, count in ledger.accepted.items() if count > 1}
    assert duplicates == {}, duplicates
    assert set(ledger.accepted) == set(expected_keys)
    webhook_managers = {k: ledger.recipients[k] for k in expected_keys if k.endswith(":webhook")}
    assert webhook_managers == {k: m for k, m in expected_keys.items() if k.endswith(":webhook")}
    mail_managers = {k: ledger.recipients[k] for k in expected_keys if not k.endswith(":webhook")}
    assert mail_managers == {k: f"{m.lower()}@bank.example" for k, m in expected_keys.items()
                             if not k.endswith(":webhook")}
    assert ledger.bad_signatures == []
    assert _outbox(store_path) == Counter({"sent": len(expected)})
    # A crash costs one short delivery lease (15 s; measured 22.5 s in all with the restart
    # and the slow receivers), not the minute the rows were leased for before.
    assert recovery_seconds < 40, recovery_seconds
