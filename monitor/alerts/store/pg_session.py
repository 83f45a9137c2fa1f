"""How long a PostgreSQL session of the alert store may wait, and what ends a wait that is too long.

Three layers bound every wait, from the server's side to the client's:

1. **Server limits**, set for each session through libpq ``options``:
   ``statement_timeout`` (a statement the server is running), ``lock_timeout`` (a
   row, table or advisory lock another session holds) and
   ``idle_in_transaction_session_timeout`` (a client that went silent inside a
   transaction loses its session, so its locks are freed for the other instances).
2. **TCP**: ``keepalives`` (an idle connection whose peer vanished is found dead
   after ``idle + interval x count`` seconds), ``tcp_user_timeout`` (data sent and
   not acknowledged ends the connection) and ``connect_timeout``.
3. **An answer deadline** (:class:`AnswerWatchdog`): a server that is frozen
   (SIGSTOP, a paused VM) or a connection that went half-open behind a proxy or a
   NAT answers no timeout and acknowledges TCP, so neither 1 nor 2 ends the wait.
   The client gives each statement ``statement_timeout + 5 s``; past that it shuts
   the connection's socket down, and the waiting libpq call fails at once with a
   closed connection. Only public interfaces are used (the socket's descriptor).

A parameter given in the store URL itself wins over the settings (libpq's own rule
for the URL the operator wrote); server settings are prepended to the URL's
``options``, so a ``-c`` there wins too.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any, Final

import psycopg
from psycopg.conninfo import conninfo_to_dict

from monitor.config import PostgresSettings
from monitor.secrets import redact_secret

__all__ = ["ANSWER_GRACE_SECONDS", "AnswerWatchdog", "connection_params"]

#: Seconds the client waits beyond ``statement_timeout`` before it drops the connection:
#: long enough for the server's own cancel to arrive first when the server is alive.
ANSWER_GRACE_SECONDS: Final = 5.0
# libpq learnt tcp_user_timeout in version 12.
_TCP_USER_TIMEOUT_LIBPQ: Final = 120000


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def connection_params(url: str, settings: PostgresSettings) -> dict[str, Any]:
    """libpq connection parameters for ``url``, bounded by ``settings``.

    Args:
        url: ``postgresql://...`` (may hold the password).
        settings: the timeouts and keepalives.

    Returns:
        Keyword arguments for :func:`psycopg.connect` (``application_name`` is
        ``cardmon`` unless the URL names one).

    Raises:
        psycopg.ProgrammingError: the URL is malformed (the message never holds the
            password, even one libpq quotes as a "percent-encoded token").
    """
    try:
        given = conninfo_to_dict(url)
    except psycopg.Error as error:
        raise psycopg.ProgrammingError(
            "invalid alert store URL: " + redact_secret(str(error).strip(), url)) from None
    params: dict[str, Any] = {
        "application_name": "cardmon",
        "connect_timeout": settings.connect_timeout_seconds,
        "keepalives": 1,
        "keepalives_idle": settings.keepalives_idle_seconds,
        "keepalives_interval": settings.keepalives_interval_seconds,
        "keepalives_count": settings.keepalives_count,
    }
    if psycopg.pq.version() >= _TCP_USER_TIMEOUT_LIBPQ and settings.tcp_user_timeout_seconds:
        params["tcp_user_timeout"] = _ms(settings.tcp_user_timeout_seconds)
    server = (f"-c statement_timeout={_ms(settings.statement_timeout_seconds)} "
              f"-c lock_timeout={_ms(settings.lock_timeout_seconds)} "
              f"-c idle_in_transaction_session_timeout="
              f"{_ms(settings.idle_in_transaction_timeout_seconds)}")
    options = given.pop("options", None)
    params.update(given)
    params["options"] = f"{server} {options}" if options else server
    return params


class AnswerWatchdog:
    """Shuts a connection's socket down when a statement outlives its deadline.

    One daemon thread per watched database, asleep unless a statement is running.
    The database calls :meth:`watch` after each connect, :meth:`arm` before each
    statement and :meth:`disarm` after it (in ``finally``); :meth:`fire` drops the
    connection at once from any thread (shutdown of the store).

    Args:
        name: the thread's name.
    """

    def __init__(self, name: str = "cardmon-pg-watchdog") -> None:
        self._cond = threading.Condition()  # guards every attribute below
        self._deadline: float | None = None  # time.monotonic() past which the statement is dropped
        self._seconds = 0.0  # the armed statement's allowance, for the reason text
        self._socket: tuple[int, Any, Any] | None = None  # (fd, local address, peer address)
        self._fired: str | None = None  # why the armed statement's connection was dropped
        self._idle = False  # the thread sleeps with no deadline: the next arm() must wake it
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def watch(self, conn: psycopg.Connection[Any]) -> None:
        """Watch ``conn``'s socket from now on (called after each connect)."""
        fd = conn.fileno()
        with socket.socket(fileno=os.dup(fd)) as sock:
            local, peer = sock.getsockname(), sock.getpeername()
        with self._cond:
            self._socket = (fd, local, peer)

    def arm(self, seconds: float) -> None:
        """A statement starts: drop the connection if it has no answer within ``seconds``."""
        with self._cond:
            self._deadline = time.monotonic() + seconds
            self._seconds = seconds
            self._fired = None
            # Woken only from an idle sleep: while statements follow each other, the
            # thread wakes at the previous deadline, finds this later one and sleeps on
            # (no thread switch per statement).
            if self._idle:
                self._cond.notify()

    def disarm(self) -> str | None:
        """The statement ended; return why its connection was dropped, or ``None``."""
        with self._cond:
            self._deadline = None
            fired, self._fired = self._fired, None
            return fired

    def fire(self, reason: str) -> None:
        """Drop the watched connection now (a running statement fails at once)."""
        with self._cond:
            self._shutdown(reason)

    def stop(self) -> None:
        """End the thread; the watchdog does nothing after this."""
        with self._cond:
            self._stopped = True
            self._socket = None
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._deadline is None:
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                self._deadline = None
                self._shutdown(f"no answer from PostgreSQL within {self._seconds:g} s")

    def _shutdown(self, reason: str) -> None:
        # Caller holds self._cond. The descriptor is checked to still be the watched
        # connection's (same local and peer address): a descriptor that libpq closed
        # meanwhile and the process reused for another socket is left alone.
        if self._socket is None:
            return
        fd, local, peer = self._socket
        try:
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            return
        with sock:
            try:
                if (sock.getsockname(), sock.getpeername()) == (local, peer):
                    sock.shutdown(socket.SHUT_RDWR)
                    self._fired = reason
            except OSError:
                pass  # already closed by the peer or by libpq
