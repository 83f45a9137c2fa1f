"""The live phase's producer: real-time traffic through librdkafka, run in its own process.

A Python producer costs ~40 µs per event to generate and ~30 µs to send; at 20,000
events/s that is more than one of this machine's two cores, so the producer, not the
monitor, would set the rate. This one moves both costs out of the timed loop:

1. before the clock starts, the fleet's traffic for the whole phase is generated
   (:func:`simulators.sources.synthetic.synthetic_events`) and encoded to its final JSON
   bytes, with a fixed-width placeholder where ``occurred_at`` goes;
2. then each event is handed to ``confluent_kafka.Producer`` (librdkafka: batching,
   compression and acknowledgements in its own C threads) at its offset from the
   first event, with the placeholder replaced by the wall-clock time of that hand-over
   (UTC, milliseconds), so the alert latency counts from the moment the event exists.

Keys are ``terminal_id`` and the partitioner is ``murmur2_random`` (the Java and aiokafka
default), so one terminal's events stay in one partition, as with
:func:`simulators.producer.produce`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from confluent_kafka import KafkaException, Producer

from simulators.fleet import Fleet
from simulators.sources.synthetic import default_faults, synthetic_events

__all__ = ["LiveTraffic", "prepare", "send_paced"]

#: Stands in for ``occurred_at`` in the encoded events: as wide as ``…T10:05:26.219+00:00``.
_PLACEHOLDER: Final = "0000-00-00T00:00:00.000+00:00"
_QUOTED_PLACEHOLDER: Final = f'"{_PLACEHOLDER}"'.encode()
#: librdkafka's batching window (ms): short, as the latency counts from the hand-over.
_LINGER_MS: Final = 5
_encoder: Final = msgspec.json.Encoder()


@dataclass(slots=True)
class LiveTraffic:
    """Encoded events and when to send each.

    Attributes:
        offsets: seconds after the first event at which each event is sent, ascending.
        values: each event's JSON, ``occurred_at`` still the placeholder.
        keys: each event's ``terminal_id`` (UTF-8).
    """

    offsets: list[float]
    values: list[bytes]
    keys: list[bytes]


def prepare(fleet: Fleet, *, rate: float, seconds: float, seed: int) -> LiveTraffic:
    """Generate and encode ``seconds`` of the fleet's traffic at ``rate`` events/s (demo faults on)."""
    start = datetime.now(UTC)
    traffic = LiveTraffic([], [], [])
    for event in synthetic_events(fleet, start=start, rate=rate, duration_s=seconds,
                                  faults=default_faults(fleet, seconds), seed=seed):
        occurred = datetime.fromisoformat(event["occurred_at"])
        traffic.offsets.append((occurred - start).total_seconds())
        event["occurred_at"] = _PLACEHOLDER
        traffic.values.append(_encoder.encode(event))
        traffic.keys.append(str(event["terminal_id"]).encode())
    return traffic


def send_paced(traffic: LiveTraffic, *, bootstrap_servers: str, topic: str) -> tuple[int, float]:
    """Send every event at its offset, stamped with the hand-over time; wait for all acks.

    Returns:
        (events acknowledged by the broker, seconds from the first hand-over to the last).

    Raises:
        confluent_kafka.KafkaException: a message was refused, or the broker did not
            acknowledge everything within 60 s after the last send.
    """
    failed: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failed.append(str(error))

    producer = Producer({"bootstrap.servers": bootstrap_servers, "linger.ms": _LINGER_MS,
                         "acks": "all", "partitioner": "murmur2_random",
                         "queue.buffering.max.messages": 1_000_000,
                         "queue.buffering.max.kbytes": 1_048_576})
    offsets, values, keys = traffic.offsets, traffic.values, traffic.keys
    total = len(values)
    started = time.perf_counter()
    last = started
    index = 0
    while index < total:
        last = time.perf_counter()
        elapsed = last - started
        stamp = b'"' + datetime.now(UTC).isoformat(timespec="milliseconds").encode() + b'"'
        while index < total and offsets[index] <= elapsed:
            value = values[index].replace(_QUOTED_PLACEHOLDER, stamp, 1)
            try:
                producer.produce(topic, value, key=keys[index], on_delivery=delivered)
            except BufferError:  # librdkafka's queue is full: let it drain, then retry
                producer.poll(0.01)
                continue
            index += 1
        producer.poll(0)
        if index < total:
            time.sleep(max(0.0, min(0.002, offsets[index] - (time.perf_counter() - started))))
    remaining = producer.flush(60.0)
    if remaining or failed:
        raise KafkaException(f"{remaining} live events unacknowledged, {len(failed)} refused "
                             f"({failed[:1]})")
    return total, max(last - started, 1e-9)
