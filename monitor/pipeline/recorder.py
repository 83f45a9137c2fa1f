"""A batch's VIP failures into the alert store, the ones it refuses isolated by bisection.

The consumer's step 2 (:mod:`monitor.pipeline.consumer`). ``write`` is one durable store
transaction whose transient errors are already retried (so what comes out of it is
either permanent or the end of the retries); :func:`record_isolating` only decides
what a **permanent, content-caused** error (:data:`monitor.faults.PERMANENT_STORE_ERRORS`)
means:

1. the whole batch is written at once (the common case: one transaction);
2. if the store refuses it, the incident changes are tried alone: refused too, they
   are dropped (logged) and the failures lose their incident link, so their alerts
   go out one by one, as when storm control fails in the pipeline;
3. the failures are bisected, each half written in its own transaction (with the
   incident changes again: applying them twice changes nothing), until each refused
   failure is alone: ``k`` refused of ``n`` cost about ``k·log2(n)`` writes;
4. each refused failure becomes a ``store_rejected`` rejection of its source message,
   detail = the error class, SQLSTATE and constraint (never the database's message,
   which can quote the row).

Any other error (transient past its bound, or an error we do not know to be caused by
content) is raised: the batch is not committed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from monitor.domain import VipFailure
from monitor.faults import describe_error, is_permanent_store_error
from monitor.incidents import IncidentChange
from monitor.pipeline.decoder import Rejection

__all__ = ["WriteFailures", "record_isolating"]

log = logging.getLogger(__name__)

#: One durable store write of failures and incident changes; transient errors retried inside.
WriteFailures = Callable[[list[VipFailure], list[IncidentChange]], Awaitable[None]]


async def record_isolating(write: WriteFailures, failures: Sequence[VipFailure],
                           indices: Sequence[int],
                           incidents: Sequence[IncidentChange]) -> list[Rejection]:
    """Store ``failures`` and ``incidents``; return a rejection for each failure the store refuses.

    Args:
        write: the store write.
        failures: the batch's VIP failures.
        indices: for each failure, its source message's position in the batch.
        incidents: the batch's incident changes.

    Returns:
        ``store_rejected`` rejections (by source message index), empty when all is stored.

    Raises:
        Exception: whatever ``write`` raises that is not a permanent store error.
    """
    kept, changes = list(failures), list(incidents)
    try:
        await write(kept, changes)
        return []
    except Exception as error:
        if not is_permanent_store_error(error):
            raise
        log.warning("the alert store refused a batch of %d VIP failures (%s); isolating the "
                    "failure(s) it refuses", len(kept), describe_error(error))
    if changes:
        try:
            await write([], changes)
        except Exception as error:
            if not is_permanent_store_error(error):
                raise
            log.error("the alert store refuses this batch's %d incident change(s) (%s); its VIP "
                      "failures are stored without storm control", len(changes), describe_error(error))
            changes = []
            kept = [replace(f, incident_id=None) for f in kept]
    refused = await _bisect(write, list(zip(kept, indices, strict=True)), changes)
    if refused:
        log.error("the alert store refused %d of %d VIP failures; their messages go to the "
                  "dead-letter topic (reason store_rejected): %s", len(refused), len(kept),
                  ", ".join(sorted({why for _, why in refused})))
    return [Rejection(index, "store_rejected", f"the alert store refused this event: {why}")
            for index, why in refused]


async def _bisect(write: WriteFailures, items: list[tuple[VipFailure, int]],
                  incidents: list[IncidentChange]) -> list[tuple[int, str]]:
    """``(index, error)`` of each failure of ``items`` the store refuses alone."""
    try:
        await write([failure for failure, _ in items], incidents)
        return []
    except Exception as error:
        if not is_permanent_store_error(error):
            raise
        if len(items) == 1:
            return [(items[0][1], describe_error(error))]
    middle = len(items) // 2
    return (await _bisect(write, items[:middle], incidents)
            + await _bisect(write, items[middle:], incidents))
