"""Small builders shared by the integration tests (not fixtures: plain functions).

The fixtures and helpers a bank's own tests could use too (the broker, an SMTP sink,
isolated settings, ``wait_until``) are public, in :mod:`monitor.testing`.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import DefaultRecordBase, DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c

__all__ = ["encode", "event", "produce_raw_batch", "read_topic", "write_registry"]


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


async def produce_raw_batch(bootstrap: str, topic: str, partition: int, values: list[bytes], *,
                            corrupt: str) -> None:
    """Put one record batch the client cannot read on the broker, with a raw Produce request.

    Built with aiokafka's own protocol classes, as a faulty producer, disk or proxy
    would leave it: ``corrupt="crc"`` flips a byte after the CRC was computed (the
    broker stores it, the consumer's CRC-32C check fails); ``corrupt="snappy"`` marks
    uncompressed records as snappy with a valid CRC (the consumer's decompression fails).

    Raises:
        AssertionError: the broker refused the batch.
    """
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    for offset, value in enumerate(values):
        builder.append(offset, timestamp=None, key=b"RAW00001", value=value, headers=[])
    data = bytearray(builder.build())
    if corrupt == "crc":
        data[-1] ^= 0xFF
    elif corrupt == "snappy":
        at = DefaultRecordBase.ATTRIBUTES_OFFSET
        attributes = struct.unpack_from(">h", data, at)[0]
        struct.pack_into(">h", data, at, (attributes & ~DefaultRecordBase.CODEC_MASK)
                         | DefaultRecordBase.CODEC_SNAPPY)
        struct.pack_into(">I", data, DefaultRecordBase.CRC_OFFSET, calc_crc32c(bytes(data[at:])))
    else:
        raise ValueError(f"corrupt must be 'crc' or 'snappy', not {corrupt!r}")
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        await client.add_topic(topic)
        leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
        response = await client.send(leader, ProduceRequest(
            transactional_id=None, required_acks=-1, timeout=10_000,
            topics=[(topic, [(partition, bytes(data))])]))
    finally:
        await client.close()
    ((_, ((_, error_code, *_),)),) = response.topics
    assert error_code == 0, f"the broker refused the raw batch (error code {error_code})"
