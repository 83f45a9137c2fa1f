"""The dead-letter copy of a rejected message: bounded so that it always fits, and delivered.

A rejected message can be as large as the broker allows, and its rejection detail
can quote it (a 700 KB string in an enum field becomes a 700 KB detail). The copy
sent to the dead-letter topic is bounded part by part, whatever came in:

============  ===========================================================  ==========
part          bound                                                          when cut
============  ===========================================================  ==========
value         :data:`VALUE_MAX_BYTES` (512 KiB), the head kept             header ``cardmon-truncated-from-bytes``
key           :data:`KEY_MAX_BYTES` (1 KiB), the head kept                 header ``cardmon-key-truncated-from-bytes``
each header   :data:`HEADER_MAX_BYTES` (1 KiB), cut on a character, ``…``  —
============  ===========================================================  ==========

With at most :data:`MAX_HEADERS` headers the whole record stays under 540 KiB, far
below the producer's ``max_request_size`` (:data:`MAX_REQUEST_BYTES`, 1 MiB) and a
broker's default ``message.max.bytes`` (1 MB). If a broker with a smaller limit still
refuses it (``MessageSizeTooLargeError``), :meth:`DeadLetter.minimal` is sent instead:
no key, no value, only the reason and where the message is (source topic, partition,
offset), so it can be read again from the source topic while it is retained.

:func:`send_dead_letters` delivers a batch's dead letters: all at once, then only the
ones that failed transiently again (never a duplicate of an acknowledged one), each
refused for good replaced by its minimal copy; a minimal copy refused too is logged
with its source coordinates and counted, never retried forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from monitor.faults import describe_error, is_permanent_produce_error

__all__ = [
    "HEADER_MAX_BYTES",
    "KEY_MAX_BYTES",
    "MAX_HEADERS",
    "MAX_REQUEST_BYTES",
    "VALUE_MAX_BYTES",
    "DeadLetter",
    "send_dead_letters",
]

log = logging.getLogger(__name__)

#: The dead-letter producer's ``max_request_size`` (aiokafka's default, set explicitly).
MAX_REQUEST_BYTES: Final = 1_048_576
#: Largest dead-letter value sent whole.
VALUE_MAX_BYTES: Final = 512 * 1024
#: Largest dead-letter key sent whole (keys are terminal IDs: a few bytes).
KEY_MAX_BYTES: Final = 1024
#: Largest value of one header (the detail; the others are short by construction).
HEADER_MAX_BYTES: Final = 1024
#: Most headers on one dead-letter record (ours; the source's are not copied).
MAX_HEADERS: Final = 10
#: Headers :meth:`DeadLetter.minimal` keeps.
_LOCATING: Final = frozenset({"cardmon-reason", "cardmon-source-topic", "cardmon-source-partition",
                              "cardmon-source-offset"})


def _cut_text(value: bytes, limit: int) -> bytes:
    """``value`` cut to ``limit`` bytes on a UTF-8 character boundary, ``…`` marking the cut."""
    if len(value) <= limit:
        return value
    ellipsis = "…".encode()
    return value[:limit - len(ellipsis)].decode("utf-8", errors="ignore").encode() + ellipsis


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record for the dead-letter topic, every part within its bound.

    Attributes:
        key: the (PAN-scrubbed) source key, at most :data:`KEY_MAX_BYTES`, or ``None``.
        value: the (PAN-scrubbed) source value, at most :data:`VALUE_MAX_BYTES`.
        headers: ``(name, value)`` pairs, at most :data:`MAX_HEADERS`, each value at
            most :data:`HEADER_MAX_BYTES`.
    """

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    @classmethod
    def bounded(cls, *, key: bytes | None, value: bytes,
                headers: Sequence[tuple[str, bytes]]) -> DeadLetter:
        """Build a dead letter from already PAN-scrubbed parts, cutting each to its bound.

        Args:
            key: the scrubbed source key, or ``None``.
            value: the scrubbed source value.
            headers: cardmon's headers (reason, detail, source); at most
                :data:`MAX_HEADERS` minus two (room for the truncation headers).

        Raises:
            ValueError: too many headers.
        """
        if len(headers) > MAX_HEADERS - 2:
            raise ValueError(f"at most {MAX_HEADERS - 2} headers, got {len(headers)}")
        kept = [(name, _cut_text(data, HEADER_MAX_BYTES)) for name, data in headers]
        if len(value) > VALUE_MAX_BYTES:
            # Too large for one produce request: keep the head, say how much there was.
            kept.append(("cardmon-truncated-from-bytes", str(len(value)).encode()))
            value = value[:VALUE_MAX_BYTES]
        if key is not None and len(key) > KEY_MAX_BYTES:
            kept.append(("cardmon-key-truncated-from-bytes", str(len(key)).encode()))
            key = key[:KEY_MAX_BYTES]
        return cls(key, value, kept)

    def minimal(self, error: str) -> DeadLetter:
        """The last resort when the broker refuses this copy: where the message is, and why.

        Args:
            error: why the full copy was refused (an error class name), as a header.
        """
        headers = [(name, data) for name, data in self.headers if name in _LOCATING]
        headers.append(("cardmon-dead-letter-error", _cut_text(error.encode(), HEADER_MAX_BYTES)))
        return DeadLetter(None, b"", headers)

    @property
    def size(self) -> int:
        """Bytes of key, value and headers (names and values), without record framing."""
        return (len(self.key or b"") + len(self.value)
                + sum(len(name.encode()) + len(data) for name, data in self.headers))


#: Produces one dead letter and waits for the broker's acknowledgement.
SendOne = Callable[[DeadLetter], Awaitable[None]]
#: Runs an attempt until it succeeds, retrying transient errors (:func:`monitor.faults.retry_transient`).
Retry = Callable[[Callable[[], Awaitable[None]]], Awaitable[None]]


async def send_dead_letters(letters: Sequence[tuple[str, DeadLetter]], send: SendOne, *,
                            retry: Retry, on_lost: Callable[[str], None]) -> None:
    """Deliver ``(reason, dead letter)`` pairs; return when each is acknowledged or given up.

    Args:
        letters: the batch's dead letters with their rejection reasons.
        send: produces one and waits for its acknowledgement.
        retry: wraps the delivery attempt (transient errors retried, stop honoured).
        on_lost: called with the reason of a message whose minimal copy was refused too.

    Raises:
        Exception: what ``retry`` raises when the broker stays unavailable
            (:class:`monitor.faults.RetryTimeout`, :class:`monitor.faults.Stopping`).
    """
    pending = list(letters)  # not yet acknowledged

    async def attempt() -> None:
        nonlocal pending
        outcomes = await asyncio.gather(*(send(letter) for _, letter in pending),
                                        return_exceptions=True)
        failed: list[tuple[str, DeadLetter]] = []
        first: BaseException | None = None
        for (reason, letter), outcome in zip(pending, outcomes, strict=True):
            if outcome is None:
                continue
            if isinstance(outcome, Exception) and is_permanent_produce_error(outcome):
                try:
                    await _send_minimal(reason, letter, outcome, send, on_lost)
                    continue
                except Exception as again:  # noqa: BLE001 (transient: the whole record again)
                    outcome = again
            failed.append((reason, letter))
            first = first or outcome
        pending = failed
        if first is not None:
            raise first

    await retry(attempt)


def _where(letter: DeadLetter) -> str:
    source = {name: data.decode(errors="replace") for name, data in letter.headers}
    return (f"{source.get('cardmon-source-topic')}[{source.get('cardmon-source-partition')}] "
            f"offset {source.get('cardmon-source-offset')}")


async def _send_minimal(reason: str, letter: DeadLetter, error: Exception, send: SendOne,
                        on_lost: Callable[[str], None]) -> None:
    """The broker refused a dead letter for good: send where it is instead, or log it."""
    log.warning("the broker refused the dead letter of %s (%d bytes, %s); sending its reason and "
                "location only", _where(letter), letter.size, describe_error(error))
    try:
        await send(letter.minimal(describe_error(error)))
    except Exception as again:
        if not is_permanent_produce_error(again):
            raise  # transient: the whole record is tried again
        log.error("the dead letter of %s (reason %s) could not be written at all (%s); the "
                  "message is only in its source topic", _where(letter), reason, describe_error(again))
        on_lost(reason)
