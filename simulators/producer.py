"""Send contract-v1 event dicts to Kafka, as fast as possible or paced in replay time.

Each event becomes one message: value = the dict as UTF-8 JSON (msgspec), key =
``terminal_id`` (UTF-8), so one terminal's events stay in one partition and in
order. Sending is batched by the client (``linger_ms``); :func:`produce` does not
wait for each delivery, only for the outstanding ones every
:data:`_MAX_IN_FLIGHT` messages and at the end, so a delivery error still
surfaces as an exception.

Pacing: with ``speed=k`` the event whose ``occurred_at`` is ``t`` is sent
``(t - t0) / k`` seconds of wall time after the first one (``t0``). With
``rebase_to_now`` every ``occurred_at`` is shifted by the same amount so the first
event happens "now"; the gaps between events are kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
from aiokafka import AIOKafkaProducer
from rich.progress import Progress

__all__ = ["produce"]

#: Client-side batching window: long enough to fill batches at replay speed,
#: short enough not to be seen at demo rates.
_LINGER_MS: Final = 20
#: Await delivery reports after this many sends, to bound memory and surface errors early.
_MAX_IN_FLIGHT: Final = 5_000

_encoder: Final = msgspec.json.Encoder()


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value)
    else:
        raise TypeError(f"occurred_at must be an RFC 3339 string or datetime, not {value!r}")
    if moment.tzinfo is None:
        raise ValueError(f"occurred_at {value!r} has no UTC offset")
    return moment


async def _aiter(events: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
                 ) -> AsyncIterator[Mapping[str, Any]]:
    if isinstance(events, AsyncIterable):
        async for event in events:
            yield event
    else:
        for event in events:
            yield event


async def produce(
    events: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
    *,
    bootstrap_servers: str,
    topic: str,
    speed: float | None = None,
    rebase_to_now: bool = False,
    progress: bool = False,
    total: int | None = None,
) -> int:
    """Send events to a Kafka topic.

    Args:
        events: contract-v1 event dicts (sync or async iterable); each needs
            ``terminal_id`` and, when pacing or rebasing, ``occurred_at`` (RFC 3339
            string with offset, or an aware ``datetime``).
        bootstrap_servers: ``host:port[,host:port...]`` of the Kafka cluster.
        topic: destination topic (e.g. ``card.transactions``).
        speed: ``None`` sends as fast as possible; ``k > 0`` paces the sends at
            ``k`` times real time, following the gaps between ``occurred_at`` values.
        rebase_to_now: shift every ``occurred_at`` by one offset so the first event
            is stamped with the current time (UTC); gaps are kept.
        progress: show a ``rich`` progress bar on the terminal.
        total: number of events expected, for the progress bar (optional).

    Returns:
        The number of events sent (all acknowledged by the broker).

    Raises:
        ValueError: ``speed`` is not positive, or an ``occurred_at`` is naive or
            unreadable while pacing or rebasing.
        TypeError: an ``occurred_at`` is missing or neither a string nor a datetime
            while pacing or rebasing.
        KeyError: an event has no ``terminal_id``.
        aiokafka.errors.KafkaError: the broker could not be reached or refused a message.
    """
    if speed is not None and speed <= 0:
        raise ValueError(f"speed must be positive or None, not {speed}")
    needs_time = speed is not None or rebase_to_now
    loop = asyncio.get_running_loop()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=_LINGER_MS)
    sent = 0
    pending: list[asyncio.Future[Any]] = []  # delivery futures not yet awaited
    first_time: datetime | None = None
    wall_start = 0.0  # loop.time() when the first event was sent
    shift = timedelta(0)
    bar = Progress(disable=not progress, transient=False)
    task = bar.add_task(f"→ {topic}", total=total)
    try:
        await producer.start()
        with bar:
            async for event in _aiter(events):
                if needs_time:
                    moment = _parse_time(event.get("occurred_at"))
                    if first_time is None:
                        first_time, wall_start = moment, loop.time()
                        if rebase_to_now:
                            shift = datetime.now(UTC) - moment
                    if speed is not None:
                        due = wall_start + (moment - first_time).total_seconds() / speed
                        delay = due - loop.time()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    if rebase_to_now:
                        event = {**event, "occurred_at": (moment + shift).isoformat()}
                key = str(event["terminal_id"]).encode()
                pending.append(await producer.send(topic, _encoder.encode(event), key=key))
                sent += 1
                if len(pending) >= _MAX_IN_FLIGHT:
                    await asyncio.gather(*pending)
                    pending.clear()
                bar.advance(task)
            await producer.flush()
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent
