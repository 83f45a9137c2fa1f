"""Synthetic traffic of a fleet: seeded ATM and POS transactions with injected faults.

:func:`synthetic_events` draws the traffic of a :class:`simulators.fleet.Fleet` (from
:func:`simulators.fleet.build_fleet`); the same fleet, seed, start time, rate and faults
give the same events, byte for byte. :func:`default_faults` is the demo's trouble.

Traffic model (per event, Poisson arrivals at ``rate`` events/second): a terminal is
drawn uniformly, then a card, which is a VIP's with probability ``vip_share`` (so a
short demo, 30–60 s at the default 200 events/s, shows a few VIP failures); the
transaction and its answer follow the fleet's mix (:data:`simulators.traffic.FLEET_MIX`):
ATM ``withdrawal`` (85 %) or ``balance_inquiry``; POS ``purchase`` read by chip (45 %),
contactless (45 %) or swipe (10 %); response codes (ISO 8583 field 39, see
``rules/response_codes.yaml``) ``00`` about 96.5 %, then ``51`` insufficient funds,
``55`` incorrect PIN, ``05`` do not honour, ``54`` expired card; ``latency_ms``
lognormal, median 300 ms at a POS and 450 ms at an ATM.

Faults (:mod:`simulators.faults`, by offset from the start) are applied on top, the
terminal faults first, then the fleet-wide ones: a
:class:`~simulators.faults.TerminalFault` fails one terminal in a window (``58`` by
default, or a timeout with ``response_code=None``); an
:class:`~simulators.faults.IssuerOutage` gives ``share`` of all transactions ``91``
after a slow answer.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from simulators.faults import IssuerOutage, TerminalFault
from simulators.fleet import Fleet
from simulators.traffic import (
    FLEET_MIX,
    PROCESSING_CODES,
    answer,
    draw_transaction,
    retrieval_reference,
)

__all__ = ["default_faults", "synthetic_events"]


def default_faults(fleet: Fleet, duration_s: float = 60.0) -> tuple[TerminalFault | IssuerOutage, ...]:
    """The demo scenario, scaled to ``duration_s`` seconds of traffic.

    The first ATM times out from 15 % to 55 % of the run, the first POS answers
    ``58`` from 35 % to 75 %, and an issuer outage gives ``91`` to 70 % of all
    transactions for 10 % of the run (at least 3 s) from 60 %.
    """
    atm = next(t for t in fleet.terminals if t.channel == "ATM")
    pos = next(t for t in fleet.terminals if t.channel == "POS")
    return (
        TerminalFault(terminal_id=atm.terminal_id, start_s=0.15 * duration_s, end_s=0.55 * duration_s,
                      response_code=None),
        TerminalFault(terminal_id=pos.terminal_id, start_s=0.35 * duration_s, end_s=0.75 * duration_s,
                      response_code="58"),
        IssuerOutage(start_s=0.6 * duration_s, duration_s=max(3.0, 0.1 * duration_s), share=0.7,
                     response_code="91"),
    )


def synthetic_events(
    fleet: Fleet, *, start: datetime | None = None, rate: float = 200.0,
    duration_s: float | None = None, faults: Sequence[TerminalFault | IssuerOutage] = (),
    vip_share: float = 0.06, seed: int = 7,
) -> Iterator[dict[str, Any]]:
    """Generate the fleet's traffic as contract-v1 event dicts.

    Args:
        fleet: from :func:`simulators.fleet.build_fleet`.
        start: time of the traffic's start (aware); ``None`` is now (UTC).
        rate: mean events per second of event time (Poisson arrivals).
        duration_s: stop after this many seconds of event time; ``None`` never stops.
        faults: :class:`~simulators.faults.TerminalFault` and
            :class:`~simulators.faults.IssuerOutage` values to apply.
        vip_share: probability that a transaction is made with a VIP's card.
        seed: random seed; same fleet, start, rate, faults and seed give the same events.

    Returns:
        An iterator of dicts ready for ``msgspec.json.encode`` (``occurred_at`` an
        RFC 3339 string with offset, millisecond precision), in time order.

    Raises:
        ValueError: ``rate`` is not positive, or ``start`` is naive.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, not {rate}")
    start = start if start is not None else datetime.now(UTC)
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    # A terminal's own fault wins over a fleet-wide one, whatever the order given.
    ordered = ([f for f in faults if isinstance(f, TerminalFault)]
               + [f for f in faults if not isinstance(f, TerminalFault)])
    rng = random.Random(f"traffic-{seed}")
    vips = fleet.vips
    others = tuple(customer for customer in fleet.customers if customer.tier is None) or vips
    stans = {t.terminal_id: rng.randrange(1_000_000) for t in fleet.terminals}  # next STAN
    run = f"syn{seed}-{int(start.timestamp())}"
    offset, index = 0.0, 0
    while True:
        offset += rng.expovariate(rate)
        if duration_s is not None and offset >= duration_s:
            return
        index += 1
        at = start + timedelta(seconds=offset)
        terminal = rng.choice(fleet.terminals)
        customer = rng.choice(vips if vips and rng.random() < vip_share else others)
        card = rng.choice(customer.cards)
        event: dict[str, Any] = {"event_id": f"{run}-{index:08d}",
                                 "occurred_at": at.isoformat(timespec="milliseconds"),
                                 "channel": terminal.channel, "terminal_id": terminal.terminal_id}
        txn_type, amount, entry_mode, mti = draw_transaction(rng, terminal.channel, FLEET_MIX)
        code, latency, entry_mode = answer(rng, terminal_id=terminal.terminal_id, channel=terminal.channel,
                                           offset=offset, entry_mode=entry_mode, faults=ordered,
                                           mix=FLEET_MIX)
        stan = stans[terminal.terminal_id]
        stans[terminal.terminal_id] = (stan + 1) % 1_000_000
        event.update(
            txn_type=txn_type, amount_minor=amount, currency=fleet.currency,
            card_ref=card.card_ref, pan_masked=card.pan_masked, customer_id=customer.customer_id,
            status="completed" if code is not None else "timeout",
            latency_ms=round(latency, 1), entry_mode=entry_mode,
            city=terminal.city, region=terminal.region, mti=mti,
            processing_code=PROCESSING_CODES[txn_type], stan=f"{stan:06d}",
            rrn=retrieval_reference(at, stan),
        )
        if code is not None:
            event["response_code"] = code
        if terminal.merchant_id is not None:
            event["merchant_id"] = terminal.merchant_id
        if terminal.branch_id is not None:
            event["branch_id"] = terminal.branch_id
        yield event
