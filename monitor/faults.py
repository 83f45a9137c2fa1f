"""Transient or permanent? How the consumer tells the two apart, and how it retries.

Every step of a batch that can fail outside our own CPU work (alert store write,
dead-letter produce, offset commit) answers one question first:

- **permanent, caused by one message's content** — the same message fails the same
  way however often it is tried (a NUL byte PostgreSQL refuses, a check constraint,
  a record too large for the broker): isolate that message, dead-letter it, go on;
- **transient** — the broker, the network, the database, a lock or the disk: retry
  the same step with capped exponential backoff (``tenacity``), logged and counted,
  for at most a time bound (``kafka.retry_timeout_seconds``), leaving at once when
  the stop event (SIGTERM) is set.

What counts as what (anything not listed is treated as transient, so it is retried
within the bound and then stops the process loudly, never dropped quietly):

=====================  ====================================================================
store, permanent       ``psycopg.DataError`` (e.g. a NUL byte), ``psycopg.IntegrityError``
                       (check, not-null, foreign-key, unique violations),
                       ``psycopg.errors.ProgramLimitExceeded`` (e.g. an index row too large),
                       ``sqlite3.DataError``, ``sqlite3.IntegrityError``, ``ValueError``
                       raised by our code (e.g. a naive event time)
produce, permanent     ``MessageSizeTooLargeError``, ``RecordTooLargeError``,
                       ``CorruptRecordException``, ``InvalidTimestampError``,
                       ``UnsupportedForMessageFormatError``
=====================  ====================================================================
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Final, TypeVar

import psycopg
import tenacity
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)

from monitor.errors import CardmonError
from monitor.secrets import redact_urls

__all__ = [
    "PERMANENT_PRODUCE_ERRORS",
    "PERMANENT_STORE_ERRORS",
    "RetryTimeout",
    "Stopping",
    "describe_error",
    "is_permanent_produce_error",
    "is_permanent_store_error",
    "retry_transient",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Store errors caused by what is written, not by the database's health.
PERMANENT_STORE_ERRORS: Final[tuple[type[Exception], ...]] = (
    psycopg.DataError, psycopg.IntegrityError, psycopg.errors.ProgramLimitExceeded,
    sqlite3.DataError, sqlite3.IntegrityError, ValueError,
)
#: Produce errors caused by the record itself: sending it again fails again.
PERMANENT_PRODUCE_ERRORS: Final[tuple[type[Exception], ...]] = (
    MessageSizeTooLargeError, RecordTooLargeError, CorruptRecordException,
    InvalidTimestampError, UnsupportedForMessageFormatError,
)
#: First wait between two tries (seconds); doubles up to ``max_backoff``.
_FIRST_BACKOFF_SECONDS: Final = 0.5
#: Once stop is set, how long an attempt already under way may still finish (seconds):
#: an offset commit or a store write that is about to succeed saves a redelivery.
_STOP_GRACE_SECONDS: Final = 5.0


class Stopping(CardmonError):
    """The stop event was set while a step was being retried: leave the batch uncommitted."""


class RetryTimeout(CardmonError, RuntimeError):
    """A transient failure lasted longer than the retry bound.

    The batch is not committed (it is redelivered to whichever member owns the
    partition next); the process is meant to exit non-zero so a supervisor restarts it.
    """


def is_permanent_store_error(error: BaseException) -> bool:
    """Whether an alert-store error is caused by the data written (see the module table)."""
    return isinstance(error, PERMANENT_STORE_ERRORS)


def is_permanent_produce_error(error: BaseException) -> bool:
    """Whether a produce error is caused by the record itself (see the module table)."""
    return isinstance(error, PERMANENT_PRODUCE_ERRORS)


def describe_error(error: BaseException) -> str:
    """A short, content-free description of an error for logs, metrics and headers.

    Only the class name, the SQLSTATE and the constraint name: a database's message can
    quote the row (``Failing row contains (...)``: a customer ID, a card reference), a
    driver's can quote a URL with its password.

    Returns:
        e.g. ``"CheckViolation (SQLSTATE 23514, constraint alerts_terminal_check)"``.
    """
    parts = []
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate:
        parts.append(f"SQLSTATE {sqlstate}")
    diag = getattr(error, "diag", None)
    constraint = getattr(diag, "constraint_name", None) if diag is not None else None
    if constraint:
        parts.append(f"constraint {constraint}")
    name = type(error).__name__
    return f"{name} ({', '.join(parts)})" if parts else name


def _transient_reason(error: BaseException) -> str:
    """:func:`describe_error` and the first line of a transient error's message, URLs redacted.

    The first line of a connection, timeout, lock or deadlock error says what happened
    ("no answer from PostgreSQL within 7 s", "Connection refused"); a database's row
    quotes (``DETAIL: Failing row contains ...``) come on later lines, and only with
    errors of content, which are never retried.
    """
    lines = str(error).strip().splitlines()
    first = redact_urls(lines[0])[:200] if lines else ""
    return f"{describe_error(error)}: {first}" if first else describe_error(error)


async def _attempt_or_stop(attempt: Callable[[], Awaitable[T]], stop: asyncio.Event) -> T:
    """Run one attempt; if ``stop`` is set meanwhile, give it a short grace, then leave."""
    if stop.is_set():
        raise Stopping
    task = asyncio.ensure_future(attempt())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            done, _ = await asyncio.wait({task}, timeout=_STOP_GRACE_SECONDS)
            if task not in done:
                # A store write in a worker thread keeps running there; its result is
                # dropped and the batch is redelivered (writes are idempotent).
                task.cancel()
                raise Stopping
        return task.result()
    finally:
        stopped.cancel()


async def retry_transient(
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str,
    stop: asyncio.Event,
    timeout_seconds: float,
    is_permanent: Callable[[BaseException], bool],
    on_retry: Callable[[BaseException], None] | None = None,
    max_backoff: float = 30.0,
) -> T:
    """Run ``attempt`` until it succeeds, retrying transient errors for a bounded time.

    Args:
        attempt: the step (a fresh awaitable per call).
        what: the step in words, for the log (``"alert store write"``).
        stop: the service's stop event (SIGTERM); retries end as soon as it is set.
        timeout_seconds: how long, from the first failure, transient errors are retried.
        is_permanent: whether an error is permanent (raised at once, never retried).
        on_retry: called with each transient error before the wait (metrics).
        max_backoff: longest wait between two attempts, in seconds.

    Returns:
        What ``attempt`` returned.

    Raises:
        Stopping: ``stop`` was set before the step succeeded.
        RetryTimeout: transient errors went on past ``timeout_seconds``; chained to the
            last one.
        Exception: the first permanent error, as raised (also ``asyncio.CancelledError``).
    """
    def transient(error: BaseException) -> bool:
        return isinstance(error, Exception) and not isinstance(error, Stopping) \
            and not is_permanent(error)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        assert error is not None
        delay = state.upcoming_sleep
        log.warning("%s failed (%s); retrying in %.1f s (attempt %d, giving up after %.0f s)",
                    what, _transient_reason(error), delay, state.attempt_number, timeout_seconds)
        if on_retry is not None:
            on_retry(error)

    async def sleep(seconds: float) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)

    retrying = tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(transient),
        stop=tenacity.stop_after_delay(timeout_seconds),
        wait=tenacity.wait_exponential(multiplier=_FIRST_BACKOFF_SECONDS, max=max_backoff)
        + tenacity.wait_random(0, _FIRST_BACKOFF_SECONDS / 2),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return await retrying(_attempt_or_stop, attempt, stop)
    except Exception as error:
        if isinstance(error, Stopping) or not transient(error):
            raise
        if stop.is_set():
            raise Stopping from error
        if on_retry is not None:
            on_retry(error)
        raise RetryTimeout(f"{what} still failing after {timeout_seconds:.0f} s "
                           f"({describe_error(error)})") from error
