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

A broker that pauses or restarts (a request timeout, a lost connection, no leader yet)
does not end the run: starting, sending and every delivery that failed transiently
are retried with capped backoff (:func:`monitor.faults.retry_transient`) for up to
``retry_seconds`` (5 minutes by default), then the last error is raised. A message
whose delivery timed out is sent again, so it may arrive twice (at-least-once; event
IDs make the monitor's alerts idempotent) and after later messages of its terminal.
An error caused by the message itself (too large) is raised at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from rich.progress import Progress

from monitor.faults import RetryTimeout, is_permanent_produce_error, retry_transient

__all__ = ["DEFAULT_RETRY_SECONDS", "produce"]

#: Client-side batching window: long enough to fill batches at replay speed,
#: short enough not to be seen at demo rates.
_LINGER_MS: Final = 20
#: Await delivery reports after this many sends, to bound memory and surface errors early.
_MAX_IN_FLIGHT: Final = 5_000

#: How long a broker outage is ridden out before the run fails (seconds).
DEFAULT_RETRY_SECONDS: Final = 300.0

_encoder: Final = msgspec.json.Encoder()


@dataclass(slots=True)
class _Sent:
    """One message sent and not yet acknowledged: its delivery future and what to send again."""

    future: asyncio.Future[Any]
    value: bytes
    key: bytes


class _Sender:
    """Sends messages and waits for their acknowledgements, retrying transient failures."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, retry_seconds: float) -> None:
        self._producer = producer
        self._topic = topic
        self._retry_seconds = retry_seconds
        self._never = asyncio.Event()  # the simulator has no stop event: Ctrl-C cancels it
        self.pending: list[_Sent] = []  # sent, not yet acknowledged, in send order

    async def _retry(self, attempt: Any, what: str) -> Any:
        try:
            return await retry_transient(attempt, what=what, stop=self._never,
                                         timeout_seconds=self._retry_seconds,
                                         is_permanent=is_permanent_produce_error, max_backoff=5.0)
        except RetryTimeout as error:
            assert error.__cause__ is not None
            raise error.__cause__ from None  # the Kafka error, as callers expect

    async def start(self) -> None:
        """Connect to the cluster (retried while the broker is not there yet)."""
        await self._retry(self._producer.start, f"connecting to Kafka for {self._topic}")

    async def send(self, value: bytes, key: bytes) -> None:
        """Hand one message to the client (retried while its buffer or metadata wait times out)."""
        try:  # the common case costs one call: no retry machinery per message
            future = await self._producer.send(self._topic, value, key=key)
        except KafkaError as error:
            if is_permanent_produce_error(error):
                raise
            future = await self._retry(lambda: self._producer.send(self._topic, value, key=key),
                                       f"sending to {self._topic}")
        self.pending.append(_Sent(future, value, key))

    async def settle(self) -> None:
        """Wait until every pending message is acknowledged, sending failed ones again."""
        async def attempt() -> None:
            for sent in self.pending:
                if sent.future.done() and sent.future.exception() is not None:
                    sent.future = await self._producer.send(self._topic, sent.value, key=sent.key)
            results = await asyncio.gather(*(s.future for s in self.pending), return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            self.pending = [s for s, r in zip(self.pending, results) if isinstance(r, BaseException)]
            if errors:
                raise errors[0]

        await self._retry(attempt, f"delivering to {self._topic}")


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
    retry_seconds: float = DEFAULT_RETRY_SECONDS,
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
        retry_seconds: how long transient broker failures are retried, in seconds.

    Returns:
        The number of events sent (all acknowledged by the broker).

    Raises:
        ValueError: ``speed`` is not positive, or an ``occurred_at`` is naive or
            unreadable while pacing or rebasing.
        TypeError: an ``occurred_at`` is missing or neither a string nor a datetime
            while pacing or rebasing.
        KeyError: an event has no ``terminal_id``.
        aiokafka.errors.KafkaError: the broker could not be reached for ``retry_seconds``,
            or refused a message for good.
    """
    if speed is not None and speed <= 0:
        raise ValueError(f"speed must be positive or None, not {speed}")
    needs_time = speed is not None or rebase_to_now
    loop = asyncio.get_running_loop()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=_LINGER_MS)
    sender = _Sender(producer, topic, retry_seconds)
    sent = 0
    first_time: datetime | None = None
    wall_start = 0.0  # loop.time() when the first event was sent
    shift = timedelta(0)
    bar = Progress(disable=not progress, transient=False)
    task = bar.add_task(f"→ {topic}", total=total)
    try:
        await sender.start()
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
                await sender.send(_encoder.encode(event), key)
                sent += 1
                if len(sender.pending) >= _MAX_IN_FLIGHT:
                    await sender.settle()
                bar.advance(task)
            await sender.settle()
    finally:
        await producer.stop()
    return sent
