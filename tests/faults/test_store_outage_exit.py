"""`cardmon run` with its PostgreSQL store gone: SIGTERM during the retries exits 0; the retry bound exits 1."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaProducer

from monitor.config import KafkaSettings
from monitor.kafka.clients import ensure_topics
from monitor.testing.broker import free_port
from monitor.testing.fixtures import kafka_settings, wait_until
from tests.helpers import encode, event, write_registry
from tests.postgres import PostgresServer, PostgresUnavailable, find_bindir

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CARDMON = Path(sys.executable).parent / "cardmon"
#: The stated bound: SIGTERM to exit while the store write is being retried (seconds).
#: The consumer leaves its retry at once; the rest is closing the Kafka clients.
EXIT_BOUND_SECONDS = 15.0


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test alone, so that it can be stopped mid-test."""
    try:
        bindir = find_bindir()
    except PostgresUnavailable as error:
        if os.environ.get("CARDMON_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{error} and CARDMON_REQUIRE_POSTGRES=1")
        pytest.skip(str(error))
    with PostgresServer(bindir) as server:
        yield server


@contextmanager
def _cardmon_run(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDMON_")}
    with log.open("wb") as err:
        process = subprocess.Popen([str(CARDMON), "run", "--config", str(config)],
                                   stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                                   cwd=config.parent, env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def _start_then_lose_the_store(kafka_bootstrap: str, name: str, tmp_path: Path,
                                     server: PostgresServer, *, retry_timeout: float,
                                     log: Path) -> tuple[Path, KafkaSettings]:
    """Write the settings of a `cardmon run` on a new topic and this PostgreSQL."""
    customers, managers = write_registry(
        tmp_path / "registry", "customer_id,name,tier,manager_id,card_refs\nC-VIP,Ann Lee,private,M-1,",
        "manager_id,name,email,phone,webhook_url,backup_manager_id,timezone\nM-1,Bo Chan,,,,,UTC")
    kafka = kafka_settings(kafka_bootstrap, name, batch_timeout_ms=100,
                           retry_timeout_seconds=retry_timeout)
    await ensure_topics(kafka, partitions=1)
    config = tmp_path / "cardmon.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": kafka.model_dump(mode="json", exclude_none=True),
        "registry": {"customers_path": str(customers), "managers_path": str(managers)},
        "alerting": {"store_url": server.new_store_url()},
        "health": {"consume_status": False},
        "metrics": {"host": "127.0.0.1", "port": free_port()},
        "api": {"enabled": False},  # its fixed default port may be taken on a shared machine
    }), encoding="utf-8")
    return config, kafka


def _text(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""


async def _fail_a_store_write(kafka: KafkaSettings, server: PostgresServer, log: Path,
                              process: subprocess.Popen[bytes]) -> None:
    """Once cardmon runs: stop PostgreSQL, send a VIP failure, wait for the store retries."""
    await wait_until(lambda: "cardmon running" in _text(log) or process.poll() is not None,
                     timeout=60, what="cardmon run started")
    assert process.poll() is None, _text(log)[-3000:]
    server.stop()  # PostgreSQL is gone: every store write now fails with a connection error
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(kafka.topic, encode(event("vip-1", customer_id="C-VIP",
                                                               response_code="91")))
    finally:
        await producer.stop()
    await wait_until(lambda: "alert store write failed" in _text(log), timeout=60,
                     what="the store write being retried")


async def test_sigterm_while_the_store_write_is_retried_exits_0_within_the_bound(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path, own_postgres: PostgresServer) -> None:
    """PostgreSQL stopped, a VIP failure retried: SIGTERM ends `cardmon run` with status 0 in under 15 s."""
    if not CARDMON.is_file():
        pytest.fail(f"cardmon console script not installed at {CARDMON}")
    log = tmp_path / "stderr.txt"
    config, kafka = await _start_then_lose_the_store(kafka_bootstrap, unique_name, tmp_path,
                                                     own_postgres, retry_timeout=600, log=log)
    with _cardmon_run(config, log) as process:
        await _fail_a_store_write(kafka, own_postgres, log, process)
        sent_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.to_thread(process.wait, 60)
        took = time.monotonic() - sent_at
    text = _text(log)
    assert returncode == 0, text[-3000:]
    assert took < EXIT_BOUND_SECONDS, f"exit took {took:.1f} s"
    assert "left uncommitted" in text, text[-5000:]
    assert own_postgres.password not in text


async def test_a_store_outage_longer_than_the_retry_bound_exits_1_for_a_restart(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path, own_postgres: PostgresServer) -> None:
    """kafka.retry_timeout_seconds = 3 with PostgreSQL gone: `cardmon run` exits 1 with one line naming the step."""
    if not CARDMON.is_file():
        pytest.fail(f"cardmon console script not installed at {CARDMON}")
    log = tmp_path / "stderr.txt"
    config, kafka = await _start_then_lose_the_store(kafka_bootstrap, unique_name, tmp_path,
                                                     own_postgres, retry_timeout=3, log=log)
    with _cardmon_run(config, log) as process:
        await _fail_a_store_write(kafka, own_postgres, log, process)
        returncode = await asyncio.to_thread(process.wait, 60)
    text = _text(log)
    assert returncode == 1, text[-3000:]
    assert re.search(r"cardmon: alert store write still failing after 3 s \((StoreUnavailable|OperationalError)", text)
    assert own_postgres.password not in text
