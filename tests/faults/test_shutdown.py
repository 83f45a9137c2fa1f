"""SIGTERM to a real `cardmon run`: in-flight sends drain within a bound, cleanup always runs, the exit code is 0."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiokafka import AIOKafkaProducer

from monitor.paths import rules_path
from monitor.testing.broker import free_port
from monitor.testing.fixtures import wait_until
from tests.helpers import encode, event, write_registry

CARDMON = Path(sys.executable).parent / "cardmon"
CLIENTS = 6
DRAIN_SECONDS = 4.0

pytestmark = pytest.mark.integration


class Webhook:
    """A webhook receiver that takes ``delay`` seconds to answer; counts requests begun and answered."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.begun: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.url = ""

    async def hook(self, request: web.Request) -> web.Response:
        key = request.headers["Idempotency-Key"]
        self.begun[key] += 1
        await asyncio.sleep(self.delay)
        self.answered[key] += 1
        return web.json_response({"ok": True})


@pytest.fixture
async def webhook(request: pytest.FixtureRequest) -> AsyncIterator[Webhook]:
    """A real aiohttp receiver on 127.0.0.1 answering after the test's delay (``indirect`` parameter)."""
    receiver = Webhook(request.param)
    app = web.Application()
    app.router.add_post("/hooks/{manager}", receiver.hook)
    runner = web.AppRunner(app, handler_cancellation=True)  # a request whose client left ends
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/M1"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def _sent(store: Path) -> int:
    """Outbox rows the monitor recorded as sent (read-only, so the monitor's WAL stays its own)."""
    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT count(*) FROM deliveries WHERE status = 'sent'").fetchone()[0])


async def _run_and_terminate(tmp_path: Path, kafka_bootstrap: str, unique_name: str,
                             receiver: Webhook) -> tuple[int, float, str, Path]:
    """Start `cardmon run`, send CLIENTS failures, SIGTERM it while every send is in flight.

    Returns (exit code, seconds from SIGTERM to exit, its log, the store file).
    """
    if not CARDMON.is_file():
        pytest.skip(f"cardmon console script not installed at {CARDMON}")
    clients = [f"C-{n:03d}" for n in range(CLIENTS)]
    customers, managers = write_registry(
        tmp_path / "registry",
        "customer_id,name,tier,manager_id,card_refs\n"
        + "\n".join(f"{c},Client {c},private,M1,tok_{c}" for c in clients),
        f"manager_id,name,webhook_url,timezone\nM1,Manager 1,{receiver.url},Europe/Paris")
    store = tmp_path / "alerts.db"
    topic = f"tx.{unique_name}"
    rules = yaml.safe_load(rules_path("alerting.yaml").read_text(encoding="utf-8"))
    rules.pop("incidents", None)  # no storm-control hold: each alert is sent at once
    policy = tmp_path / "alerting.yaml"
    policy.write_text(yaml.safe_dump(rules), encoding="utf-8")
    config = tmp_path / "cardmon.yaml"
    config.write_text(
        f"kafka: {{bootstrap_servers: '{kafka_bootstrap}', topic: {topic}, dead_letter_topic: {topic}.dlq,"
        f" group_id: stop-{unique_name}, batch_timeout_ms: 50}}\n"
        f"registry: {{customers_path: {customers}, managers_path: {managers}}}\n"
        f"alerting: {{store_path: {store}, policy_path: {policy}, poll_interval_seconds: 0.05,"
        f" shutdown_drain_seconds: {DRAIN_SECONDS}, escalation_interval_seconds: 3600}}\n"
        "health: {consume_status: false}\n"
        f"metrics: {{host: 127.0.0.1, port: {free_port()}}}\n"
        "api: {enabled: false}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDMON_")}
    log = tmp_path / "cardmon.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(CARDMON), "run", "--config", str(config)], stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                   cwd=tmp_path)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        now = datetime.now(UTC)
        for n, client in enumerate(clients):
            value = event(f"stop-{unique_name}-{n}", occurred_at=now.isoformat(), card_ref=f"tok_{client}",
                          response_code="91", terminal_id=f"ATM{n:05d}")
            await producer.send(topic, encode(value), key=value["terminal_id"].encode())
        await producer.flush()
        await wait_until(lambda: len(receiver.begun) == CLIENTS, timeout=60,
                         what="every alert's webhook request in flight")
        assert not receiver.answered
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = await asyncio.to_thread(process.wait, 60)
        seconds = time.monotonic() - signalled
        # The last connection closed cleanly: SQLite folded its WAL into the file and removed it.
        assert not Path(f"{store}-wal").exists(), "the alert store was not closed"
        return code, seconds, log.read_text(errors="replace"), store
    finally:
        await producer.stop()
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("webhook", [1.5], indirect=True)
async def test_sigterm_lets_in_flight_sends_finish_and_record_then_exits_0(
    tmp_path: Path, kafka_bootstrap: str, unique_name: str, webhook: Webhook,
) -> None:
    """SIGTERM with every send in flight: each is answered and recorded as sent, the store is closed cleanly, exit 0 within the drain bound."""
    code, seconds, log, store = await _run_and_terminate(tmp_path, kafka_bootstrap, unique_name, webhook)
    assert code == 0, log[-3000:]
    assert seconds < DRAIN_SECONDS + 6, seconds
    assert sum(webhook.answered.values()) == CLIENTS
    assert _sent(store) == CLIENTS  # recorded before the store was closed
    assert "SIGTERM received: stopping" in log and "cardmon stopped" in log


@pytest.mark.timeout(120)
@pytest.mark.parametrize("webhook", [60.0], indirect=True)
async def test_sigterm_with_sends_that_never_answer_exits_0_after_the_drain_bound(
    tmp_path: Path, kafka_bootstrap: str, unique_name: str, webhook: Webhook,
) -> None:
    """SIGTERM while a receiver never answers: the sends are cancelled after the drain bound, cleanup still runs to the end, exit 0 (never 1 on a timeout)."""
    code, seconds, log, store = await _run_and_terminate(tmp_path, kafka_bootstrap, unique_name, webhook)
    assert code == 0, log[-3000:]
    assert DRAIN_SECONDS - 0.5 < seconds < DRAIN_SECONDS + 6, seconds
    assert f"the delivery worker still busy after the {DRAIN_SECONDS:g} s drain; cancelling it" in log
    assert "cardmon stopped" in log and "Traceback" not in log
    assert _sent(store) == 0  # nothing was accepted: the rows stay pending, sent after a restart
