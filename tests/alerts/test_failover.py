"""Two ``cardmon run`` processes in one consumer group sharing a PostgreSQL alert store; one is killed."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from monitor.alerts.store import AlertStore, window_start_for
from monitor.ids import alert_id_for
from monitor.paths import rules_path
from monitor.testing.broker import free_port
from monitor.testing.fixtures import wait_until
from tests.helpers import encode, event, write_registry
from tests.postgres import PostgresServer

from .conftest import Receiver, SmtpServer

CARDMON = Path(sys.executable).parent / "cardmon"
CLIENTS = 40
WINDOWS = 3  # alerts per client: failures in three 10-minute windows
EVENTS_PER_ALERT = 3
PARTITIONS = 4
TERMINALS = 16  # message keys, spread over the partitions
SESSION_TIMEOUT_MS = 6000  # Tansu ignores LeaveGroup: a dead member leaves after this
API_TOKEN = "failover-test-token"

pytestmark = pytest.mark.integration


def _registry(folder: Path, webhook_url: str) -> tuple[Path, Path]:
    managers = "manager_id,name,email,phone,webhook_url,backup_manager_id,timezone\n" + "\n".join(
        f"RM-{m:02d},Manager {m},rm{m:02d}@bank.example,,{webhook_url},,Europe/Paris" for m in range(8))
    customers = "customer_id,name,tier,manager_id,card_refs\n" + "\n".join(
        f"C-{c:03d},Client {c},private,RM-{c % 8:02d},tok_{c:03d}" for c in range(CLIENTS))
    return write_registry(folder, customers, managers)


def _events(base: datetime) -> list[tuple[bytes, dict[str, Any]]]:
    """(key, event) of every failure, window by window, in the order a switch would send them."""
    out = []
    for window in range(WINDOWS):
        for k in range(EVENTS_PER_ALERT):
            for c in range(CLIENTS):
                n = len(out)
                at = base + timedelta(seconds=600 * window + 60 * k + 5)
                terminal = f"ATM{n % TERMINALS:05d}"
                out.append((terminal.encode(), event(
                    f"fo-{c}-{window}-{k}", occurred_at=at.isoformat(), customer_id=f"C-{c:03d}",
                    card_ref=f"tok_{c:03d}", terminal_id=terminal, response_code="91")))
    return out


def _in_flight(url: str, mails: Counter[str], hooks: Counter[str]) -> set[tuple[str, str]]:
    """(alert_id, channel) already at a receiver but still pending and leased in the store."""
    now = datetime.now(UTC)
    with AlertStore(url) as store:
        leased = {(a.alert_id, d.channel) for a in store.list_alerts() for d in a.deliveries
                  if d.status == "pending" and d.next_attempt_at > now}
    return {(a, c) for a, c in leased if (mails[a] if c == "email" else hooks[f"{a}:{c}"])}


def _policy_without_grouping(path: Path) -> Path:
    """rules/alerting.yaml without storm control and the rate cap: every alert has messages of its own."""
    rules = yaml.safe_load(rules_path("alerting.yaml").read_text(encoding="utf-8"))
    rules.pop("incidents", None)
    rules.pop("rate_limit", None)
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    return path


def _config(path: Path, settings: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


@contextmanager
def _instances() -> Iterator[Callable[[Path, Path], subprocess.Popen[bytes]]]:
    """Start ``cardmon run --config CONFIG`` processes (logging to LOG); stop the living ones at exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARDMON_", "PG"))}
    processes: list[subprocess.Popen[bytes]] = []

    def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as err:
            processes.append(subprocess.Popen(
                [str(CARDMON), "run", "--config", str(config)], stdout=err, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=config.parent, env=env))
        return processes[-1]

    try:
        yield start
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _assigned(log: Path) -> int:
    """Partitions of the transaction topic the instance owns, by its last 'partitions assigned' line."""
    lines = re.findall(r"partitions assigned: (.*)", log.read_text(errors="replace"))
    return len(re.findall(r"'tx\.[^']*', \d+", lines[-1])) if lines else 0


@pytest.mark.timeout(300)
async def test_two_instances_share_a_group_and_postgresql_and_one_killed_loses_and_doubles_nothing(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, postgres: PostgresServer,
    smtp_server: SmtpServer, http_receiver: Callable[[list[int]], Awaitable[Receiver]],
) -> None:
    """Every alert reaches each of its channels exactly once although one of two instances is SIGKILLed mid-stream."""
    began = time.monotonic()
    receiver = await http_receiver([200])
    customers, managers = _registry(tmp_path / "registry", receiver.url)
    topic = f"tx.{unique_name}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1), NewTopic(f"{topic}.dlq", 1, 1)])
    finally:
        await admin.close()
    url = postgres.new_store_url()
    policy = _policy_without_grouping(tmp_path / "alerting.yaml")
    api_port = free_port()
    configs: list[Path] = []
    logs: list[Path] = []
    for n in range(2):
        folder = tmp_path / f"instance-{n}"
        folder.mkdir()
        configs.append(_config(folder / "cardmon.yaml", {
            "kafka": {"bootstrap_servers": kafka_bootstrap, "topic": topic,
                      "dead_letter_topic": f"{topic}.dlq", "group_id": f"fo-{unique_name}",
                      "batch_timeout_ms": 50, "session_timeout_ms": SESSION_TIMEOUT_MS,
                      "heartbeat_interval_ms": 1000},
            "registry": {"customers_path": str(customers), "managers_path": str(managers)},
            # The events happened two hours ago: none is stale here.
            "alerting": {"store_url": url, "poll_interval_seconds": 0.1, "policy_path": str(policy),
                         "stale_after_seconds": None,
                         "smtp": {"host": smtp_server.host, "port": smtp_server.port,
                                  "from_address": "cardmon@bank.example"}},
            "health": {"consume_status": False},
            "metrics": {"host": "127.0.0.1", "port": free_port()},
            "api": {"port": api_port if n == 1 else free_port(), "token": API_TOKEN},
        }))
        logs.append(folder / "cardmon.log")
    base = window_start_for(datetime.now(UTC) - timedelta(hours=2))
    stream = _events(base)
    expected = {alert_id_for(f"C-{c:03d}", base + timedelta(seconds=600 * w))
                for c in range(CLIENTS) for w in range(WINDOWS)}

    def mails() -> Counter[str]:
        return Counter(re.sub(r"^<(al-[a-z2-7]+)\.email@.*", r"\1", str(m["Message-ID"]))
                       for m in list(smtp_server.mail.messages))

    def hooks() -> Counter[str]:
        return Counter(headers["Idempotency-Key"] for headers, _ in list(receiver.requests))

    async def owning(what: str, condition: Callable[[], bool]) -> None:
        try:
            await wait_until(condition, timeout=60, what=what)
        except AssertionError as error:
            tails = "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-3000:]}" for log in logs)
            raise AssertionError(f"{error}\n{tails}") from None

    with _instances() as start:
        # One after the other, so the group forms, then rebalances to share the partitions.
        doomed = start(configs[0], logs[0])
        await owning("the first instance owning every partition",
                     lambda: _assigned(logs[0]) == PARTITIONS)
        survivor = start(configs[1], logs[1])
        await owning("both instances owning partitions",
                     lambda: 0 < _assigned(logs[0]) < PARTITIONS
                     and _assigned(logs[0]) + _assigned(logs[1]) == PARTITIONS)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            killed_after = len(stream) // 3
            for n, (key, value) in enumerate(stream):
                await producer.send_and_wait(topic, encode(value), key=key)
                if n == killed_after:
                    # Mid-stream, while it records and sends: no clean shutdown, no commit.
                    await wait_until(lambda: len(mails()) >= 10, timeout=30, what="first alerts sent")
                    doomed.send_signal(signal.SIGKILL)
                    doomed.wait(timeout=10)
                    killed_at = time.monotonic()
                    await asyncio.sleep(0.5)  # the receivers finish what reached them
                    in_flight = _in_flight(url, mails(), hooks())
                await asyncio.sleep(0.01)
        finally:
            await producer.stop()
        await owning("the survivor owning every partition", lambda: _assigned(logs[1]) == PARTITIONS)
        takeover_seconds = time.monotonic() - killed_at
        with AlertStore(url) as store:
            # Done when every alert was stored, reached both channels, and nothing is still
            # pending (a row leased by the dead instance is sent again when its lease ends).
            await wait_until(lambda: set(mails()) == expected and set(hooks()) == {
                f"{a}:webhook" for a in expected} and store.pending_count() == 0,
                timeout=150, what="every alert on both channels and an empty outbox")
            delivered_seconds = time.monotonic() - killed_at
            await asyncio.sleep(1.0)  # anything sent twice would arrive now
            alerts = store.list_alerts()
        async with httpx.AsyncClient() as http:
            listed = (await http.get(f"http://127.0.0.1:{api_port}/alerts?limit=500",
                                     headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)).json()
        assert survivor.poll() is None

    assert {a.alert_id for a in alerts} == expected
    assert {a.event_count for a in alerts} == {EVENTS_PER_ALERT}  # no event lost or counted twice
    assert {tuple((d.channel, d.status) for d in a.deliveries) for a in alerts} == {
        (("email", "sent"), ("webhook", "sent"))}
    # Exactly once per Message-ID / Idempotency-Key, the keys receivers deduplicate on.
    # A second copy (same key) is allowed only for a message the killed instance had
    # handed to the receiver but not yet marked sent: its lease ran out, and the
    # survivor sent it again.
    received = mails() + Counter({key.removesuffix(":webhook"): n for key, n in hooks().items()})
    assert set(mails()) == expected and set(hooks()) == {f"{a}:webhook" for a in expected}
    again = {key for key, n in mails().items() if n > 1} | {
        key.removesuffix(":webhook") for key, n in hooks().items() if n > 1}
    assert max(mails().values()) <= 2 and max(hooks().values()) <= 2
    assert {(a, "email") for a in again if mails()[a] > 1} | {
        (a, "webhook") for a in again if hooks()[f"{a}:webhook"] > 1} <= in_flight
    assert {a["alert_id"] for a in listed["alerts"]} == expected  # the survivor's API reads the shared store
    for log in logs:
        text = log.read_text(errors="replace")
        assert postgres.password not in text, [l for l in text.splitlines() if postgres.password in l][:3]
        assert "alert store postgresql://cardmon:***@127.0.0.1:" in text
    print(f"\nfailover: {sum(received.values())} messages for {2 * len(expected)} deliveries "
          f"({len(in_flight)} in flight at the kill); PostgreSQL startup "
          f"{postgres.startup_seconds:.2f} s, survivor owned every "
          f"partition {takeover_seconds:.1f} s and delivered everything {delivered_seconds:.1f} s after "
          f"the kill, test {time.monotonic() - began:.1f} s")
