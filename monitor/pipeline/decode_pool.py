"""Decode large batches in a child process, off the main process's GIL.

Everything the monitor does in Python shares one GIL: the client's record unpacking on
the event loop, the batch processor in its worker thread, the store write. Decoding
(:func:`monitor.pipeline.decoder.decode_frame`: msgspec, the column checks, building the
polars frame) is about half the processor's time and a pure function of the batch's
values, so :class:`DecodePool` runs it in a child process, on another core, while the
main process goes on (the previous batch's processing, the next batch's fetch). The
result is the same :class:`~monitor.pipeline.decoder.DecodedFrame` the main process
would have built (it is the same function; the frame travels back pickled).

Lifecycle, on the event loop:

1. nothing runs until a batch of more than
   :data:`~monitor.pipeline.decoder.REFERENCE_BATCH_MAX` messages is submitted (tests
   and small live batches never start a process);
2. that batch starts the pool (``spawn``: the monitor has threads, never ``fork``) and
   a warm-up decode in it; until the child answers, big batches are decoded in-process
   (:meth:`DecodePool.submit` returns ``None``), so the first one waits for no start-up;
3. once ready, each big batch is sent to the child and :meth:`DecodePool.result` awaits
   its frame;
4. the child dies (``BrokenProcessPool``), fails, or does not answer within
   :data:`RESULT_TIMEOUT_SECONDS`: a warning is logged (never the batch's content: values
   may hold raw PANs), ``result`` returns ``None`` (the caller decodes in-process) and a
   new pool is started. After :data:`MAX_BREAKS` breaks within
   :data:`BREAK_WINDOW_SECONDS` the pool stays off and everything is decoded in-process
   (logged once);
5. :meth:`DecodePool.close` shuts the pool down and waits for the child to exit (killing
   it after :data:`CLOSE_TIMEOUT_SECONDS`).

The child ignores SIGINT (a Ctrl-C in a terminal reaches the whole process group: the
parent decides when to stop) and exits when the parent closes the pool or dies (its
call queue reaches end of file).
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from typing import Any, Final

from monitor.faults import Stopping
from monitor.pipeline.decoder import REFERENCE_BATCH_MAX, DecodedFrame, decode_frame

__all__ = ["BREAK_WINDOW_SECONDS", "CLOSE_TIMEOUT_SECONDS", "MAX_BREAKS", "RESULT_TIMEOUT_SECONDS", "DecodePool", "PendingDecode"]

log = logging.getLogger(__name__)

#: Broken pools tolerated within :data:`BREAK_WINDOW_SECONDS` before decoding stays
#: in-process: a child that keeps dying (out of memory, a bug) must not cost a restart
#: per batch.
MAX_BREAKS: Final = 3
#: The window (seconds) over which breaks are counted.
BREAK_WINDOW_SECONDS: Final = 600.0
#: How long to wait for the child's frame (seconds) before decoding in-process and
#: replacing the child: a batch of 100,000 messages decodes in about a second.
RESULT_TIMEOUT_SECONDS: Final = 30.0

#: polars threads of a child: the main process's polars already has one per core, and the
#: child's work per batch is small; more threads only fight the main process for the cores
#: (measured: the main process's classify and incident stages took twice as long).
_CHILD_POLARS_THREADS: Final = "1"
#: Added to the child's niceness: its work is off the critical path (it decodes the batch
#: read ahead while the main process handles the one before), the main process's is on
#: it; on 2 busy cores a child at the same priority slowed the main process's stages down
#: as much as it saved (bench/README.md, "Decoding in a child process").
_CHILD_NICENESS: Final = 10
#: How long :meth:`DecodePool.close` waits for a child to exit before killing it (seconds).
CLOSE_TIMEOUT_SECONDS: Final = 10.0
#: One valid event: the warm-up decodes a batch of it (> REFERENCE_BATCH_MAX), so the
#: child has loaded msgspec, polars and the column checks before its first real batch.
_WARM_UP_EVENT: Final = (b'{"event_id":"warm-up","occurred_at":"2026-03-02T10:15:00+01:00",'
                         b'"channel":"ATM","terminal_id":"ATM00042","txn_type":"withdrawal",'
                         b'"amount_minor":20000,"currency":"EUR","card_ref":"tok-warm-up",'
                         b'"response_code":"00","latency_ms":420.0,"city":"Lyon"}')


def _child_init() -> None:
    """In the child, before any work: leave SIGINT to the parent, yield the cores to it.

    It also exits without the interpreter's teardown: the child imported the parent's
    main module (the whole monitor under ``spawn``), and collecting all of it at exit at
    niceness +10, on a machine the parent keeps busy, took from 0.4 s to over 10 s
    (measured: the parent's stop then waited for it). Nothing in the child needs a
    teardown (it holds no file, socket or state), so the first exit handler ends it at
    once; the objects imported before any work are frozen out of the collector too.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(_CHILD_NICENESS)
    gc.freeze()
    atexit.register(_exit_now)


def _exit_now() -> None:
    """The child's last exit handler to be registered, so the first to run: exit now."""
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):
            stream.flush()
    os._exit(0)


def _warm_up() -> int:
    """In the child: decode a small big batch once; returns the child's process ID."""
    decode_frame([_WARM_UP_EVENT] * (REFERENCE_BATCH_MAX + 1))
    return os.getpid()


@contextmanager
def _child_environment(**variables: str) -> Iterator[None]:
    """Environment variables set only while a child process is spawned (it copies them).

    The child imports polars before any code of ours runs in it (``spawn`` imports the
    parent's main module first), so its thread pool can only be sized from its
    environment. The parent's polars read its own at import and is not affected; glibc
    never frees an environment array, so other threads reading variables meanwhile are
    safe.
    """
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass(frozen=True, slots=True)
class PendingDecode:
    """A batch being decoded in the child (see :meth:`DecodePool.submit`).

    Attributes:
        future: resolves to the batch's frame, or raises what the child raised.
        executor: the pool it was sent to (a break is counted once per pool).
    """

    future: asyncio.Future[DecodedFrame]
    executor: ProcessPoolExecutor

    def cancel(self) -> None:
        """Forget the result (a read-ahead batch dropped before it was handled)."""
        self.future.cancel()


class DecodePool:
    """Decodes batches of more than ``REFERENCE_BATCH_MAX`` messages in child processes.

    Use it from one event loop: :meth:`submit` as soon as a batch is read, :meth:`result`
    before processing it, :meth:`close` on stop.

    Args:
        processes: child processes (``kafka.decode_processes``); 0 decodes everything
            in-process (:meth:`submit` always returns ``None``).
        max_breaks: breaks within ``break_window`` seconds after which the pool stays off.
        break_window: seconds over which breaks are counted.
        result_timeout: seconds to wait for one batch's frame.

    Attributes:
        decoded: batches decoded in a child so far.
        fallbacks: batches sent to a child that were then decoded in-process.
        wait_seconds: time :meth:`result` spent waiting for frames (seconds).
    """

    def __init__(self, processes: int, *, max_breaks: int = MAX_BREAKS,
                 break_window: float = BREAK_WINDOW_SECONDS,
                 result_timeout: float = RESULT_TIMEOUT_SECONDS) -> None:
        if processes < 0:
            raise ValueError("processes must be 0 or more")
        self.processes = processes
        self._max_breaks = max_breaks
        self._break_window = break_window
        self._result_timeout = result_timeout
        self._executor: ProcessPoolExecutor | None = None
        self._ready = False  # the current executor's child answered its warm-up
        self._breaks: deque[float] = deque()  # <time.monotonic() of each break within the window>
        self._off = processes == 0  # decode in-process for good (setting, or too many breaks)
        self.decoded = 0
        self.fallbacks = 0
        self.wait_seconds = 0.0

    @property
    def ready(self) -> bool:
        """Whether big batches are being sent to a child now."""
        return self._ready and not self._off

    @property
    def off(self) -> bool:
        """Whether everything is decoded in-process for good (setting 0, or too many breaks)."""
        return self._off

    def child_pids(self) -> list[int]:
        """Process IDs of the current pool's children (empty when none runs)."""
        executor = self._executor
        processes = getattr(executor, "_processes", None) or {}  # private, read-only here
        return sorted(process.pid for process in processes.values() if process.is_alive())

    def submit(self, values: list[bytes | None]) -> PendingDecode | None:
        """Start decoding ``values`` in the child, if it should and can.

        Must be called on the event loop.

        Args:
            values: one batch's message values, in batch order.

        Returns:
            The pending decode; ``None`` to decode in-process: the batch is small, the
            pool is off, or its child is still starting (the first big batch starts it).
        """
        if self._off or len(values) <= REFERENCE_BATCH_MAX:
            return None
        executor = self._executor
        if executor is None:
            self._start()
            return None
        if not self._ready:
            return None
        try:
            with self._spawning(executor):  # a pool of several may spawn its next child here
                future = asyncio.get_running_loop().run_in_executor(executor, decode_frame, values)
        except (BrokenProcessPool, RuntimeError):  # broken, or shut down meanwhile
            self._broken(executor, "it was broken when a batch was sent")
            return None
        return PendingDecode(future, executor)

    async def result(self, pending: PendingDecode, *, stop: asyncio.Event | None = None
                     ) -> DecodedFrame | None:
        """The batch's frame from the child, or ``None`` to decode it in-process.

        Never raises because of the child: a dead or failing child, or one that does not
        answer in time, gives ``None`` (logged, the pool replaced).

        Args:
            pending: what :meth:`submit` returned for the batch.
            stop: the consumer's stop event: when set, waiting ends at once.

        Raises:
            monitor.faults.Stopping: ``stop`` was set before the frame came back.
        """
        started = time.perf_counter()
        waiter = asyncio.ensure_future(stop.wait()) if stop is not None else None
        try:
            waiting: list[asyncio.Future[Any]] = [pending.future, *([waiter] if waiter else [])]
            done, _ = await asyncio.wait(waiting,
                                         timeout=self._result_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            if waiter is not None:
                waiter.cancel()
            self.wait_seconds += time.perf_counter() - started
        if pending.future not in done:
            if stop is not None and stop.is_set():
                pending.cancel()
                raise Stopping("stopped while a batch was decoded")
            self._broken(pending.executor, f"no frame within {self._result_timeout:g} s", kill=True)
        else:
            try:
                frame = pending.future.result()
            except BrokenProcessPool:
                self._broken(pending.executor, "the decode process died")
            except Exception as error:  # noqa: BLE001 - a bug in the child: decode in-process
                log.warning("decoding a batch in the child failed (%s); decoding it in-process",
                            type(error).__name__)  # never the error's text: it may quote a value
            else:
                self.decoded += 1
                return frame
        self.fallbacks += 1
        return None

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Shut the pool down and wait for its children to exit (blocking; idempotent).

        A child still busy after ``timeout`` seconds (hung, or stopped) is killed. A later
        big batch starts a new pool (unless the pool is off).

        Args:
            timeout: seconds the children get to finish their batch and exit.
        """
        executor, self._executor = self._executor, None
        self._ready = False
        if executor is None:
            return
        children = list((getattr(executor, "_processes", None) or {}).values())  # private, read only
        executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        for child in children:
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                log.warning("the decode process did not exit within %g s: killed", timeout)
                child.kill()
                child.join()

    def _start(self) -> None:
        """Start a pool and its warm-up; the pool is ready when the warm-up answers."""
        executor = ProcessPoolExecutor(max_workers=self.processes,
                                       mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_child_init)
        self._executor, self._ready = executor, False
        loop = asyncio.get_running_loop()
        try:
            with self._spawning(executor):  # the first child is spawned here
                warm_up = loop.run_in_executor(executor, _warm_up)
        except (BrokenProcessPool, RuntimeError, OSError) as error:
            self._broken(executor, f"it could not start ({type(error).__name__})")
            return

        def started(done: asyncio.Future[int]) -> None:
            if self._executor is not executor:
                return  # closed or replaced meanwhile
            if done.cancelled() or done.exception() is not None:
                self._broken(executor, "its first decode failed")
                return
            self._ready = True
            log.info("decoding big batches in a child process (pid %d)", done.result())

        warm_up.add_done_callback(started)

    def _spawning(self, executor: ProcessPoolExecutor) -> AbstractContextManager[None]:
        """What a child spawned now inherits: one polars thread (see :func:`_child_environment`)."""
        if len(getattr(executor, "_processes", None) or {}) >= self.processes:
            return nullcontext()  # all spawned: leave the environment alone
        return _child_environment(POLARS_MAX_THREADS=_CHILD_POLARS_THREADS)

    def _broken(self, executor: ProcessPoolExecutor, why: str, *, kill: bool = False) -> None:
        """Count a break of ``executor`` (once), replace it, or stay in-process after too many."""
        if executor is not self._executor:
            return  # already counted and replaced
        if kill:  # a child that does not answer: make sure it is gone
            for pid in self.child_pids():
                with suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        self._executor, self._ready = None, False
        executor.shutdown(wait=False, cancel_futures=True)
        now = time.monotonic()
        self._breaks.append(now)
        while self._breaks and self._breaks[0] < now - self._break_window:
            self._breaks.popleft()
        if len(self._breaks) >= self._max_breaks:
            self._off = True
            log.warning("the decode process broke %d times in %g s (%s): decoding in-process from now on",
                        len(self._breaks), self._break_window, why)
            return
        log.warning("the decode process broke (%s): this batch is decoded in-process; starting a new one",
                    why)
        self._start()
