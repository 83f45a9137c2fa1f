"""Helpers for the simulator tests: reading a topic back from the real broker."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

ReadBack = Callable[[str, str, int], Awaitable[list[ConsumerRecord]]]


async def read_back(bootstrap: str, topic: str, expected: int,
                    timeout_s: float = 30.0) -> list[ConsumerRecord]:
    """Read ``topic`` from the start until ``expected`` records arrived (or ``timeout_s``), plus any extra."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=5_000)).values():
                records.extend(batch)
        # One more short poll, so a message beyond the expected count would be seen.
        for batch in (await consumer.getmany(timeout_ms=300)).values():
            records.extend(batch)
    finally:
        await consumer.stop()
    return records


@pytest.fixture
def topic_reader() -> ReadBack:
    """A coroutine function ``(bootstrap, topic, expected) -> records`` reading a topic from the start."""
    return read_back
