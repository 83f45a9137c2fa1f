"""A scenario's generated data: its transactions, and the registry files a monitor reads.

:func:`scenario_events` turns a :class:`~simulators.scenario.schema.Scenario` into
contract-v1 events in time order:

* background traffic of ordinary (non-VIP) clients: Poisson arrivals at
  ``traffic.rate`` per second of *event* time for ``traffic.duration_s`` seconds, at
  the terminals without ``background: false``, answered ``00`` except for the
  ``traffic.declines`` distribution (customer and card classes only, so technical
  failures come from the faults alone);
* the scripted ``visits`` of VIP clients, by offset; a visit is approved unless a
  fault or its own ``response_code`` says otherwise (normal declines never apply);
* the ``faults`` (:mod:`simulators.faults`) applied to both, through the shared
  traffic mix (:mod:`simulators.traffic`; a scenario's POS reads are 60 % chip,
  35 % contactless, 5 % swipe); a silent terminal's transactions are dropped.

Generation is deterministic given the scenario (its ``seed`` included).

The registry files: :func:`scenario_fleet` (the scenario as a :class:`simulators.fleet.Fleet`;
its VIPs and managers are written with :func:`simulators.fleet.write_registry`), :func:`write_terminals` (the terminal
registry with opening hours) and :func:`write_baseline` (the silent detector's
baseline: each background terminal expects ``traffic.rate × 3600 / background
terminals`` transactions in every hour of the week).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl

from monitor.health.baseline import HOURS_PER_WEEK, Baseline
from simulators.faults import is_silent
from simulators.fleet import Card, Customer, Fleet, Terminal
from simulators.scenario.schema import Scenario, TerminalSpec
from simulators.traffic import (
    PROCESSING_CODES,
    SCENARIO_POS_ENTRY_MODES,
    TrafficMix,
    answer,
    draw_transaction,
    retrieval_reference,
)

__all__ = ["scenario_events", "scenario_fleet", "write_baseline", "write_terminals"]


def scenario_fleet(scenario: Scenario, *, webhook_base_url: str | None = None) -> Fleet:
    """The scenario's terminals, VIPs and managers as a :class:`simulators.fleet.Fleet`.

    Its clients are the VIPs only (background clients are drawn by :func:`scenario_events`);
    :func:`simulators.fleet.write_registry` writes their registry (with each manager's
    ``recovery_follow_up`` opt-in).

    Args:
        scenario: the scenario.
        webhook_base_url: if given, every manager's webhook is ``{base}/{manager_id}``
            (the runner's receiver, :mod:`simulators.scenario.receiver`), whatever the
            file says; ``None`` keeps the managers as written.
    """
    terminals = tuple(
        Terminal(terminal_id=t.terminal_id, channel=t.channel, city=t.city, region=t.region,
                 merchant_id=t.merchant_id, branch_id=t.branch_id)
        for t in scenario.fleet.terminals
    )
    vips = tuple(
        Customer(customer_id=vip.customer_id, name=vip.name, tier=vip.tier, manager_id=vip.manager_id,
                 cards=tuple(Card(card_ref=c.card_ref, pan_masked=c.pan_masked) for c in vip.cards))
        for vip in scenario.vips
    )
    managers = tuple(scenario.managers)
    if webhook_base_url is not None:
        managers = tuple(replace(m, webhook_url=f"{webhook_base_url.rstrip('/')}/{m.manager_id}")
                         for m in managers)
    return Fleet(terminals=terminals, customers=vips, managers=managers)


def write_terminals(scenario: Scenario, path: Path) -> Path:
    """The terminal registry (``health.terminals_path``): ID, channel, region, branch, merchant, zone, hours."""
    columns = ("terminal_id", "channel", "region", "branch_id", "merchant_id", "timezone", "opening_hours")
    pl.DataFrame([{c: getattr(t, c) for c in columns} for t in scenario.fleet.terminals],
                 schema={c: pl.String for c in columns}).write_csv(path)
    return path


def write_baseline(scenario: Scenario, path: Path) -> Path:
    """The silent detector's baseline: each background terminal's Poisson rate, every hour of the week."""
    background = [t.terminal_id for t in scenario.fleet.terminals if t.background]
    per_hour = scenario.traffic.rate * 3600 / max(len(background), 1)
    Baseline(pl.DataFrame(
        {"terminal_id": sorted(background),
         **{f"h{hour}": [per_hour] * len(background) for hour in range(HOURS_PER_WEEK)}},
        schema={"terminal_id": pl.String, **{f"h{hour}": pl.Float32 for hour in range(HOURS_PER_WEEK)}},
    )).write(path)
    return path


def scenario_events(scenario: Scenario) -> Iterator[dict[str, Any]]:
    """The scenario's transactions (background and visits, faults applied) in time order.

    Yields:
        Contract-v1 event dicts; ``occurred_at`` is RFC 3339 with the start's offset.
        Same scenario (seed included), same events, byte for byte.
    """
    rng = random.Random(f"scenario-{scenario.name}-{scenario.seed}")
    traffic = scenario.traffic
    terminals = {t.terminal_id: t for t in scenario.fleet.terminals}
    background = [t for t in scenario.fleet.terminals if t.background]
    clients = [Card(card_ref=f"tok_{rng.getrandbits(64):016x}",
                    pan_masked=f"{rng.choice(('497010', '535522'))}******{rng.randrange(10_000):04d}")
               for _ in range(traffic.customers)]
    arrivals: list[tuple[float, int, dict[str, Any]]] = []  # (offset, order, partial event)
    offset = 0.0
    while background:
        offset += rng.expovariate(traffic.rate)
        if offset >= traffic.duration_s:
            break
        drawn = rng.choice(clients)
        arrivals.append((offset, len(arrivals), {
            "terminal": rng.choice(background), "card": drawn, "customer_id": None,
            "amount_minor": None, "currency": None, "response_code": None, "entry_mode": None,
            "txn_type": None}))
    cards = {vip.customer_id: vip.cards for vip in scenario.vips}
    for visit in scenario.visits:
        arrivals.append((visit.at_s, len(arrivals), {
            "terminal": terminals[visit.terminal_id], "card": cards[visit.customer_id][visit.card],
            "customer_id": visit.customer_id, "amount_minor": visit.amount_minor,
            "currency": visit.currency, "response_code": visit.response_code,
            "entry_mode": visit.entry_mode, "txn_type": visit.txn_type}))
    arrivals.sort(key=lambda item: (item[0], item[1]))
    mix = TrafficMix(pos_entry_modes=SCENARIO_POS_ENTRY_MODES, declines=tuple(traffic.declines.items()))
    stans = {terminal_id: rng.randrange(1_000_000) for terminal_id in terminals}
    for index, (at_s, _, spec) in enumerate(arrivals, start=1):
        terminal: TerminalSpec = spec["terminal"]
        if is_silent(scenario.faults, terminal.terminal_id, at_s):
            continue
        at = scenario.start + timedelta(seconds=at_s)
        txn_type, amount, entry_mode, mti = draw_transaction(rng, terminal.channel, mix)
        entry_mode = spec["entry_mode"] or entry_mode
        # A VIP's scripted visit is approved unless a fault (or its own response code) says otherwise.
        code, latency, entry_mode = answer(rng, terminal_id=terminal.terminal_id, channel=terminal.channel,
                                           offset=at_s, entry_mode=entry_mode, faults=scenario.faults,
                                           mix=mix, normal_declines=spec["customer_id"] is None)
        if spec["response_code"] is not None:  # a scripted outcome (the issuer's own decision)
            code = spec["response_code"]
        if spec["txn_type"] is not None and spec["txn_type"] != txn_type:  # no extra draw
            txn_type = spec["txn_type"]
            amount = 0 if txn_type == "balance_inquiry" else amount or 10_000
        if spec["amount_minor"] is not None:
            amount = spec["amount_minor"]
        stan = stans[terminal.terminal_id]
        stans[terminal.terminal_id] = (stan + 1) % 1_000_000
        card: Card = spec["card"]
        event: dict[str, Any] = {
            "event_id": f"{scenario.name}-{scenario.seed}-{index:07d}",
            "occurred_at": at.isoformat(timespec="milliseconds"),
            "channel": terminal.channel, "terminal_id": terminal.terminal_id,
            "txn_type": txn_type, "amount_minor": amount,
            "currency": spec["currency"] or terminal.currency,
            "card_ref": card.card_ref, "pan_masked": card.pan_masked,
            "status": "completed" if code is not None else "timeout",
            "latency_ms": round(latency, 1), "entry_mode": entry_mode,
            "city": terminal.city, "region": terminal.region, "mti": mti,
            "processing_code": PROCESSING_CODES[txn_type], "stan": f"{stan:06d}",
            "rrn": retrieval_reference(at, stan),
        }
        if spec["customer_id"] is not None:
            event["customer_id"] = spec["customer_id"]
        if code is not None:
            event["response_code"] = code
        for optional in ("merchant_id", "branch_id"):
            if getattr(terminal, optional) is not None:
                event[optional] = getattr(terminal, optional)
        yield event
