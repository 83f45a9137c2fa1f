"""Small builders shared by the integration tests (not fixtures: plain functions)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer


def event(event_id: str, **fields: Any) -> dict[str, Any]:
    """A valid contract-v1 event dict; ``fields`` override the defaults."""
    base: dict[str, Any] = {
        "event_id": event_id,
        "occurred_at": "2026-03-02T10:15:00+01:00",
        "channel": "ATM",
        "terminal_id": "ATM00042",
        "txn_type": "withdrawal",
        "amount_minor": 20000,
        "currency": "EUR",
        "card_ref": "tok-card-1",
        "response_code": "00",
        "latency_ms": 420.0,
        "city": "Lyon",
    }
    base.update(fields)
    return base


def encode(value: dict[str, Any]) -> bytes:
    """JSON-encode an event dict the way a producer would."""
    return msgspec.json.encode(value)


def write_registry(folder: Path, customers: str, managers: str) -> tuple[Path, Path]:
    """Write customers.csv and managers.csv (CSV text given without trailing newline)."""
    folder.mkdir(parents=True, exist_ok=True)
    customers_path, managers_path = folder / "customers.csv", folder / "managers.csv"
    customers_path.write_text(customers.strip() + "\n", encoding="utf-8")
    managers_path.write_text(managers.strip() + "\n", encoding="utf-8")
    return customers_path, managers_path


async def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``condition`` every 50 ms; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
    """Read ``expected`` records from the start of ``topic`` (fails on timeout)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                records.extend(messages)
    finally:
        await consumer.stop()
    return records
