"""The dead-letter copy is bounded part by part and always fits; its delivery never retries forever."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, RequestTimedOutError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from monitor.kafka.dead_letters import (
    HEADER_MAX_BYTES,
    KEY_MAX_BYTES,
    MAX_REQUEST_BYTES,
    VALUE_MAX_BYTES,
    DeadLetter,
    send_dead_letters,
)


def _headers(detail: bytes) -> list[tuple[str, bytes]]:
    return [("cardmon-reason", b"invalid_field"), ("cardmon-detail", detail),
            ("cardmon-source-topic", b"card.transactions"), ("cardmon-source-partition", b"2"),
            ("cardmon-source-offset", b"41")]


def _record_bytes(letter: DeadLetter) -> int:
    """Size of a one-record batch, as aiokafka estimates it against max_request_size."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(letter.key, letter.value, letter.headers)


def test_a_small_message_is_copied_whole() -> None:
    """Key, value and headers within their bounds are kept byte for byte, with no truncation header."""
    letter = DeadLetter.bounded(key=b"ATM00042", value=b'{"event_id": "x"}', headers=_headers(b"bad"))
    assert letter.key == b"ATM00042" and letter.value == b'{"event_id": "x"}'
    assert letter.headers == _headers(b"bad")


def test_every_part_of_a_huge_message_is_cut_and_the_record_fits() -> None:
    """A 3 MB value, a 700 KB key and a 700 KB detail (an enum value quoted) make a record under 1 MiB."""
    detail = ("Expected `'ATM' | 'POS' | 'ECOM'`, got `'" + "é" * 350_000 + "'`").encode()
    letter = DeadLetter.bounded(key=b"k" * 700_000, value=b"v" * 3_000_000, headers=_headers(detail))
    assert len(letter.value) == VALUE_MAX_BYTES
    assert letter.key is not None and len(letter.key) == KEY_MAX_BYTES
    headers = dict(letter.headers)
    assert len(headers["cardmon-detail"]) <= HEADER_MAX_BYTES
    assert headers["cardmon-detail"].decode().endswith("…"), "cut on a character, marked"
    assert headers["cardmon-truncated-from-bytes"] == b"3000000"
    assert headers["cardmon-key-truncated-from-bytes"] == b"700000"
    assert _record_bytes(letter) < MAX_REQUEST_BYTES


def test_the_minimal_copy_keeps_only_where_the_message_is_and_why() -> None:
    """The last-resort copy has no key or value: the reason, the source coordinates and the error."""
    letter = DeadLetter.bounded(key=b"ATM1", value=b"x" * 10, headers=_headers(b"detail"))
    minimal = letter.minimal("MessageSizeTooLargeError")
    assert minimal.key is None and minimal.value == b""
    assert dict(minimal.headers) == {
        "cardmon-reason": b"invalid_field", "cardmon-source-topic": b"card.transactions",
        "cardmon-source-partition": b"2", "cardmon-source-offset": b"41",
        "cardmon-dead-letter-error": b"MessageSizeTooLargeError"}


def test_too_many_headers_are_refused() -> None:
    """The header count is bounded too (room is kept for the two truncation headers)."""
    with pytest.raises(ValueError, match="at most 8 headers"):
        DeadLetter.bounded(key=None, value=b"", headers=[("h", b"")] * 9)


def _letter(offset: int) -> DeadLetter:
    headers = [(n, v) for n, v in _headers(b"detail") if n != "cardmon-source-offset"]
    return DeadLetter.bounded(key=b"k", value=b"v" * offset,
                              headers=[*headers, ("cardmon-source-offset", str(offset).encode())])


async def _retry_three_times(attempt: Callable[[], Awaitable[None]]) -> None:
    """A stand-in for the consumer's bounded retry: three tries, no wait."""
    for left in (2, 1, 0):
        try:
            await attempt()
            return
        except Exception:
            if not left:
                raise


async def test_only_the_records_that_failed_transiently_are_sent_again() -> None:
    """A timeout on one of three records: the other two are sent once, that one twice."""
    sent: list[int] = []
    failed_once: set[int] = set()

    async def send(letter: DeadLetter) -> None:
        offset = int(dict(letter.headers)["cardmon-source-offset"])
        if offset == 2 and offset not in failed_once:
            failed_once.add(offset)
            raise RequestTimedOutError()
        sent.append(offset)

    await send_dead_letters([("invalid_json", _letter(n)) for n in (1, 2, 3)], send,
                            retry=_retry_three_times, on_lost=lambda reason: None)
    assert sorted(sent) == [1, 2, 3]


async def test_a_record_refused_for_good_goes_minimal_and_a_refused_minimal_is_counted() -> None:
    """MessageSizeTooLargeError: the minimal copy instead; refused too: counted as lost, never retried."""
    attempts: list[tuple[int, bool]] = []
    lost: list[str] = []

    async def send(letter: DeadLetter) -> None:
        offset = int(dict(letter.headers)["cardmon-source-offset"])
        attempts.append((offset, letter.value == b""))
        if offset in (2, 3) and letter.value:
            raise MessageSizeTooLargeError()
        if offset == 3:
            raise MessageSizeTooLargeError()  # even the minimal copy

    await send_dead_letters([("invalid_field", _letter(n)) for n in (1, 2, 3)], send,
                            retry=_retry_three_times, on_lost=lost.append)
    assert sorted(attempts) == [(1, False), (2, False), (2, True), (3, False), (3, True)]
    assert lost == ["invalid_field"]


async def test_a_broker_that_stays_down_ends_the_retry_with_its_error() -> None:
    """Transient errors past the retry's bound come out of send_dead_letters (the batch is not committed)."""
    async def send(letter: DeadLetter) -> None:
        raise KafkaConnectionError()

    with pytest.raises(KafkaConnectionError):
        await send_dead_letters([("invalid_json", _letter(1))], send, retry=_retry_three_times,
                                on_lost=lambda reason: None)
