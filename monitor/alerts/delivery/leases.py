"""Holding the rows a delivery pass claimed: renewing their leases, recording outcomes durably.

The store leases a claimed row to the pass for ``lease_seconds``
(:meth:`~monitor.alerts.store.AlertStore.claim_due`): another pass or instance does not
send it meanwhile, and a killed worker's rows are due again within one lease. While
the pass holds rows, :class:`LeaseRenewal` extends their leases every third of a
lease (compare-and-set: :meth:`~monitor.alerts.store.AlertStore.renew_leases`), so a
slow send or a slow write of an outcome keeps its row; a row whose attempt ended is
taken out of ``held`` by the worker and no longer renewed. A renewal that waited (a
lock) or failed brings the next one forward: it comes before half of what is left of
the earliest lease held is spent.

What a channel did is recorded with :func:`record_durably`: a lost mark would send
the row again (a duplicate for the manager) or lose an attempt, so a store outage is
ridden out for a bounded time while the leases are still renewed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

from monitor.alerts.delivery.fallback import describe_error
from monitor.alerts.store import AlertStore
from monitor.alerts.store.db import is_transient

__all__ = ["DEFAULT_LEASE_SECONDS", "STORE_PAUSE_MAX_SECONDS", "LeaseRenewal", "record_durably"]

# Logged as the worker's: the renewal is part of its pass.
log = logging.getLogger("monitor.alerts.delivery.worker")
T = TypeVar("T")

#: Seconds a claim holds a row before it must be renewed. Short, so the rows of a
#: worker that was killed mid-send are due again seconds after a restart; renewed every
#: third of it, so two missed renewals in a row (a stalled loop) still keep the row.
DEFAULT_LEASE_SECONDS: Final = 15.0
#: Longest pause between two tries while the alert store is unavailable (seconds).
STORE_PAUSE_MAX_SECONDS: Final = 30.0
# A failed lease renewal is tried again this soon, not a third of a lease later.
_RENEW_RETRY_SECONDS: Final = 0.5


class LeaseRenewal:
    """Renews the leases of one worker's held rows.

    Args:
        store: the alert store holding the outbox.
        lease_seconds: how long a claim or a renewal holds a row (seconds, > 0).
    """

    def __init__(self, store: AlertStore, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self._store = store
        self._lease_seconds = lease_seconds

    async def keep(self, held: dict[int, datetime]) -> None:
        """Extend the leases of ``held`` (``delivery_id`` → lease end) until cancelled.

        ``held`` is shared with the pass: it removes a row when the row's attempt
        ends; this updates each lease end it renewed and drops a row whose lease it
        could not renew (marked meanwhile, or taken by another pass after it ran out).
        Store errors are logged and retried soon; they never end the renewal.
        """
        pause = self._lease_seconds / 3
        while True:
            await asyncio.sleep(pause)
            pause = self._lease_seconds / 3
            if not held:
                continue
            leases = dict(held)
            until = datetime.now(UTC) + timedelta(seconds=self._lease_seconds)
            try:
                renewed = set(await asyncio.to_thread(self._store.renew_leases, leases, until))
            except Exception as error:
                if not is_transient(error):
                    log.exception("renewing %d delivery lease(s) failed; retrying", len(leases))
                else:  # one line: an outage or a lock is not a bug
                    log.warning("renewing %d delivery lease(s) failed, the alert store is "
                                "unavailable (%s); retrying", len(leases), describe_error(error))
                pause = min(_RENEW_RETRY_SECONDS, _half_left(held))
                continue
            for delivery_id in leases:
                if delivery_id not in held:
                    continue  # its attempt ended meanwhile
                if delivery_id in renewed:
                    held[delivery_id] = until
                else:  # marked meanwhile, or the lease ran out and another pass took it
                    del held[delivery_id]
                    log.debug("delivery %d: lease not renewed", delivery_id)
            pause = min(pause, _half_left(held))


def _half_left(held: dict[int, datetime]) -> float:
    # Half the seconds left of the earliest lease held (0 when one has run out).
    if not held:
        return float("inf")
    return max(0.0, (min(held.values()) - datetime.now(UTC)).total_seconds() / 2)


async def record_durably(what: str, call: Callable[[], T], retry_seconds: float) -> T:
    """Record what a channel did (``call()`` in a thread), riding out a store outage.

    A mark that is lost would make the row be sent again (a duplicate for the
    manager) or lose an attempt, so transient store errors are retried with a pause
    doubling from 0.5 s up to 30 s, for up to ``retry_seconds``; the shutdown's
    drain bound cancels it sooner. The leases of the pass are renewed meanwhile.
    Anything else is raised.

    Returns:
        What ``call`` returned.
    """
    pause = 0.5
    deadline = time.monotonic() + retry_seconds
    while True:
        try:
            return await asyncio.to_thread(call)
        except Exception as error:
            if not is_transient(error) or time.monotonic() + pause > deadline:
                raise
            log.warning("%s: not recorded yet, the alert store is unavailable (%s); "
                        "trying again in %.1f s", what, describe_error(error), pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, STORE_PAUSE_MAX_SECONDS)
