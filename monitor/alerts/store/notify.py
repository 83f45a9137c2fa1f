"""Hearing of outbox rows other instances commit: PostgreSQL ``LISTEN``/``NOTIFY``.

Every transaction that adds a due delivery (a new outbox row, or one set ``pending``
again) sends ``NOTIFY cardmon_outbox`` just before its ``COMMIT``
(:class:`monitor.alerts.store.postgres.PostgresDatabase`); PostgreSQL delivers it to every
listening session once, and only if the transaction commits. :class:`OutboxListener`
holds one such session, on its own connection and thread, and calls ``on_notify`` for
each batch of notifications: any instance's delivery worker then starts a pass at once
instead of at the end of its poll interval, whichever instance stored the alert.

Guarantees and limits: a notification is a hint, never the work itself: the worker
still claims rows with ``FOR NO KEY UPDATE SKIP LOCKED``, so two woken workers never send
one row twice. Notifications sent while the listening connection is down are lost; the
listener then reconnects with a pause doubling from 1 s to 30 s (until stopped), and
calls ``on_notify`` once after each reconnection, and the worker's poll interval
(``alerting.poll_interval_seconds``) still finds every due row meanwhile. A SQLite store is
one process's: the in-process wake (:meth:`monitor.alerts.delivery.worker.DeliveryWorker.wake`)
covers it, and there is nothing to listen to.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

import psycopg

from monitor.alerts.store.pg_session import connection_params
from monitor.alerts.store.postgres import OUTBOX_CHANNEL
from monitor.config import PostgresSettings
from monitor.secrets import redact_secret

__all__ = ["OutboxListener"]

log = logging.getLogger(__name__)

#: How often the listening thread looks at its stop flag (seconds).
_CHECK_STOP_SECONDS: Final = 0.5
_RECONNECT_FIRST_SECONDS: Final = 1.0
_RECONNECT_MAX_SECONDS: Final = 30.0


class OutboxListener:
    """``LISTEN cardmon_outbox`` on a connection of its own, in a daemon thread.

    Args:
        url: the store's ``postgresql://`` URL (may hold the password; never logged).
        on_notify: called from the listening thread after notifications arrive (and
            after each reconnection); it must be thread-safe and quick, e.g.
            ``lambda: loop.call_soon_threadsafe(worker.wake)``.
        settings: the connection's timeouts and keepalives (defaults if ``None``).
    """

    def __init__(self, url: str, on_notify: Callable[[], object],
                 settings: PostgresSettings | None = None) -> None:
        self._url = url
        self._params = connection_params(url, settings if settings is not None else PostgresSettings())
        self._on_notify = on_notify
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()  # set while the LISTEN is in place (tests, health)

    def start(self) -> None:
        """Start listening in the background (returns at once; connection errors are retried)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cardmon-outbox-listener",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop listening and close the connection (waits up to ``timeout`` seconds)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        pause = _RECONNECT_FIRST_SECONDS
        while not self._stop.is_set():
            try:
                with psycopg.connect(autocommit=True, **self._params) as conn:
                    conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
                    self.listening.set()
                    pause = _RECONNECT_FIRST_SECONDS
                    self._notify()  # rows may have been committed while nobody listened
                    while not self._stop.is_set():
                        if any(True for _ in conn.notifies(timeout=_CHECK_STOP_SECONDS)):
                            self._notify()
            except psycopg.Error as error:
                self.listening.clear()
                if self._stop.is_set():
                    return
                log.warning("outbox listener: connection to the PostgreSQL alert store lost (%s); "
                            "reconnecting in %.0f s (deliveries still run on the poll interval)",
                            redact_secret(str(error).strip().splitlines()[0] if str(error).strip()
                                          else type(error).__name__, self._url), pause)
                self._stop.wait(pause)
                pause = min(pause * 2, _RECONNECT_MAX_SECONDS)
        self.listening.clear()

    def _notify(self) -> None:
        try:
            self._on_notify()
        except Exception:  # a broken callback must not end the listener
            log.exception("outbox listener: on_notify failed")
