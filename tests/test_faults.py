"""Transient or permanent: the classification and the bounded, stoppable retry loop."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import psycopg
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, RequestTimedOutError

from monitor.faults import (
    RetryTimeout,
    Stopping,
    describe_error,
    is_permanent_produce_error,
    is_permanent_store_error,
    retry_transient,
)


@pytest.mark.parametrize("error", [
    psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"),
    psycopg.errors.CheckViolation("new row violates check constraint"),
    psycopg.errors.ProgramLimitExceeded("index row size exceeds btree maximum"),
    sqlite3.IntegrityError("CHECK constraint failed"),
    sqlite3.DataError("string or blob too big"),
    ValueError("naive datetime"),
])
def test_content_errors_of_the_store_are_permanent(error: Exception) -> None:
    """Data, integrity and limit errors (and our own ValueError) are caused by what is written."""
    assert is_permanent_store_error(error)


@pytest.mark.parametrize("error", [
    psycopg.OperationalError("connection refused"),
    psycopg.errors.LockNotAvailable("lock timeout"),
    psycopg.errors.QueryCanceled("statement timeout"),
    psycopg.errors.DiskFull("no space left on device"),
    psycopg.errors.DeadlockDetected("deadlock detected"),
    psycopg.InterfaceError("the connection is closed"),
    sqlite3.OperationalError("database is locked"),
    OSError("disk I/O error"),
])
def test_health_errors_of_the_store_are_transient(error: Exception) -> None:
    """Connection, lock, timeout, deadlock and disk errors are the database's, not the message's."""
    assert not is_permanent_store_error(error)


def test_a_record_too_large_is_permanent_and_a_timeout_is_not() -> None:
    """The broker refusing the record's size is permanent; a request timeout or lost connection is not."""
    assert is_permanent_produce_error(MessageSizeTooLargeError())
    assert not is_permanent_produce_error(RequestTimedOutError())
    assert not is_permanent_produce_error(KafkaConnectionError())


def test_an_error_is_described_without_its_message() -> None:
    """A database message may quote the row: only class, SQLSTATE and constraint are kept."""
    error = psycopg.errors.CheckViolation('Failing row contains (C-SECRET-42, tok_4111)')
    assert describe_error(error) == "CheckViolation (SQLSTATE 23514)"
    assert "C-SECRET" not in describe_error(error)
    assert describe_error(KafkaConnectionError("host:9092")) == "KafkaConnectionError"


async def test_transient_errors_are_retried_until_success() -> None:
    """Two transient failures, then success: the result is returned and each retry reported."""
    calls: list[int] = []
    retried: list[str] = []

    async def attempt() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise psycopg.OperationalError("server closed the connection")
        return "stored"

    result = await retry_transient(attempt, what="store", stop=asyncio.Event(), timeout_seconds=30,
                                   is_permanent=is_permanent_store_error, max_backoff=0.05,
                                   on_retry=lambda e: retried.append(type(e).__name__))
    assert result == "stored"
    assert retried == ["OperationalError", "OperationalError"]


async def test_a_permanent_error_is_raised_at_once() -> None:
    """A permanent error is not retried: the first one comes out as it is."""
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise psycopg.DataError("NUL byte")

    with pytest.raises(psycopg.DataError):
        await retry_transient(attempt, what="store", stop=asyncio.Event(), timeout_seconds=30,
                              is_permanent=is_permanent_store_error)
    assert calls == 1


async def test_retries_end_at_the_time_bound() -> None:
    """A transient failure that never ends raises RetryTimeout after the bound, chained to the error."""
    async def attempt() -> None:
        raise psycopg.OperationalError("connection refused")

    started = time.monotonic()
    with pytest.raises(RetryTimeout, match="store still failing after 1 s") as caught:
        await retry_transient(attempt, what="store", stop=asyncio.Event(), timeout_seconds=1.0,
                              is_permanent=is_permanent_store_error, max_backoff=0.2)
    assert 1.0 <= time.monotonic() - started < 3.0
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)


async def test_the_stop_event_ends_the_wait_between_tries() -> None:
    """Set during a long backoff, the stop event ends the retry within milliseconds with Stopping."""
    stop = asyncio.Event()

    async def attempt() -> None:
        raise psycopg.OperationalError("connection refused")

    asyncio.get_running_loop().call_later(0.3, stop.set)
    started = time.monotonic()
    with pytest.raises(Stopping):
        await retry_transient(attempt, what="store", stop=stop, timeout_seconds=600,
                              is_permanent=is_permanent_store_error, max_backoff=60)
    assert time.monotonic() - started < 2.0


async def test_the_stop_event_ends_a_hanging_attempt_after_a_grace() -> None:
    """An attempt that hangs (a half-open connection) is left after the 5 s grace once stop is set."""
    stop = asyncio.Event()

    async def attempt() -> None:
        await asyncio.sleep(3600)

    asyncio.get_running_loop().call_later(0.1, stop.set)
    started = time.monotonic()
    with pytest.raises(Stopping):
        await retry_transient(attempt, what="store", stop=stop, timeout_seconds=600,
                              is_permanent=is_permanent_store_error)
    assert 5.0 <= time.monotonic() - started < 7.0


async def test_the_retry_warning_names_what_happened_without_secrets_or_rows(
        caplog: pytest.LogCaptureFixture) -> None:
    """The first line of a transient error is logged, URL password redacted; its later lines are not."""
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise psycopg.OperationalError(
                "cannot reach postgresql://cardmon:s3cr3t-pw@db:5432/cardmon: Connection refused\n"
                "DETAIL:  Failing row contains (C-SECRET-42)")

    with caplog.at_level("WARNING", logger="monitor.faults"):
        await retry_transient(attempt, what="alert store write", stop=asyncio.Event(),
                              timeout_seconds=30, is_permanent=is_permanent_store_error,
                              max_backoff=0.05)
    assert "alert store write failed (OperationalError: cannot reach postgresql://" in caplog.text
    assert "Connection refused" in caplog.text
    assert "s3cr3t-pw" not in caplog.text and "C-SECRET-42" not in caplog.text
