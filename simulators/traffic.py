"""One traffic mix for every generator: what a transaction is, and how it is answered.

The synthetic fleet (:mod:`simulators.sources.synthetic`) and the scenarios
(:mod:`simulators.scenario.generation`) draw their transactions here, with the same
random draws in the same order, so each stays deterministic given its seed:

* :func:`draw_transaction`: an ATM does ``withdrawal`` (85 %, amounts from
  :data:`WITHDRAWALS_MINOR`) or ``balance_inquiry`` (amount 0), read by chip, MTI
  ``0200``; a POS does ``purchase`` (lognormal amount, median 25.00, 0.50 to 5,000.00)
  read by chip, contactless or swipe in the shares of :attr:`TrafficMix.pos_entry_modes`,
  MTI ``0100``;
* :func:`answer`: the faults (:mod:`simulators.faults`) first, in the order given; else a
  lognormal latency (median 300 ms at a POS, 450 ms at an ATM) and a normal decline
  (:attr:`TrafficMix.declines`, response code to probability) or ``00``;
* :func:`retrieval_reference`: the RRN of a transaction from its time and STAN.

The mixes differ only where stated: :data:`FLEET_MIX` is the synthetic fleet's
(45 % chip, 45 % contactless, 10 % swipe); a scenario takes :data:`SCENARIO_POS_ENTRY_MODES`
(60 / 35 / 5) and the declines of its file.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from simulators.faults import (
    CardWave,
    ChipDegradation,
    Fault,
    Flapping,
    IssuerOutage,
    TerminalFault,
    within,
)

__all__ = [
    "AUTHORIZATION_TIMEOUT_MS",
    "FLEET_MIX",
    "NORMAL_DECLINES",
    "PROCESSING_CODES",
    "SCENARIO_POS_ENTRY_MODES",
    "WITHDRAWALS_MINOR",
    "Answer",
    "TrafficMix",
    "answer",
    "draw_transaction",
    "retrieval_reference",
]

#: How long an acquirer waits for an authorization answer before it records a timeout.
AUTHORIZATION_TIMEOUT_MS: Final = 30_000.0
#: ATM withdrawal amounts (minor units), drawn uniformly.
WITHDRAWALS_MINOR: Final = (2_000, 4_000, 5_000, 6_000, 10_000, 20_000)
#: ISO 8583 field 3 (processing code) per transaction type.
PROCESSING_CODES: Final = {"purchase": "000000", "withdrawal": "010000", "balance_inquiry": "310000"}
#: Normal (fault-free) declines: response code and probability; the rest is ``00``.
NORMAL_DECLINES: Final = (("51", 0.015), ("55", 0.008), ("05", 0.008), ("54", 0.004))
#: Shares of chip, contactless and swipe reads at a POS in a scenario.
SCENARIO_POS_ENTRY_MODES: Final = (0.6, 0.35, 0.05)
_ENTRY_MODES: Final = ("chip", "contactless", "swipe")
_FLEET_WIDE: Final = (IssuerOutage, CardWave)  # faults of every terminal, not one

#: (response code, or ``None`` for a timeout; latency in ms; entry mode).
Answer = tuple[str | None, float, str]


@dataclass(frozen=True, slots=True)
class TrafficMix:
    """The shares that shape ordinary traffic.

    Attributes:
        pos_entry_modes: shares of chip, contactless and swipe reads at a POS (sum 1).
        declines: normal declines, ``(response code, probability)`` in draw order.
    """

    pos_entry_modes: tuple[float, float, float] = (0.45, 0.45, 0.10)
    declines: tuple[tuple[str, float], ...] = NORMAL_DECLINES


#: The synthetic fleet's mix.
FLEET_MIX: Final = TrafficMix()


def draw_transaction(rng: random.Random, channel: str, mix: TrafficMix) -> tuple[str, int, str, str]:
    """Draw one transaction at a terminal of ``channel`` (``"ATM"`` or ``"POS"``).

    Returns:
        ``(txn_type, amount_minor, entry_mode, mti)``.
    """
    if channel == "ATM":
        txn_type = "withdrawal" if rng.random() < 0.85 else "balance_inquiry"
        amount = rng.choice(WITHDRAWALS_MINOR) if txn_type == "withdrawal" else 0
        return txn_type, amount, "chip", "0200"
    amount = min(500_000, max(50, round(rng.lognormvariate(math.log(2_500), 1.0))))
    entry_mode = rng.choices(_ENTRY_MODES, mix.pos_entry_modes)[0]
    return "purchase", amount, entry_mode, "0100"


def answer(rng: random.Random, *, terminal_id: str, channel: str, offset: float, entry_mode: str,
           faults: Sequence[Fault], mix: TrafficMix, normal_declines: bool = True) -> Answer:
    """The answer to one transaction at ``offset`` seconds: the first fault that hits it, else normal.

    A :class:`~simulators.faults.ChipDegradation` that turns a chip read into a fallback
    (``entry_mode`` ``"fallback"``, ISO 8583 field 22 ``80``) stops the search and the
    transaction is answered normally. :class:`~simulators.faults.Silent` is not applied
    here: a silent terminal sends nothing (:func:`simulators.faults.is_silent`).

    Args:
        rng: the generator's random source (draws depend on the faults that apply).
        terminal_id: the terminal (ISO 8583 field 41).
        channel: ``"ATM"`` or ``"POS"``.
        offset: seconds after the start of the traffic.
        entry_mode: as drawn by :func:`draw_transaction`.
        faults: applied in this order.
        mix: its ``declines`` give the normal answers.
        normal_declines: without it the answer is ``00`` unless a fault hits.

    Returns:
        ``(response code or None for a timeout, latency in ms, entry mode)``.
    """
    for fault in faults:
        if isinstance(fault, _FLEET_WIDE):
            if within(offset, fault.start_s, fault.start_s + fault.duration_s) and rng.random() < fault.share:
                # An outage answers after the switch's own timeout; a card decline is quick.
                median = 8_000.0 if isinstance(fault, IssuerOutage) else 300.0
                return fault.response_code, rng.lognormvariate(math.log(median), 0.2), entry_mode
            continue
        if fault.terminal_id != terminal_id:
            continue
        if isinstance(fault, TerminalFault) and within(offset, fault.start_s, fault.end_s):
            return _failed(rng, fault.response_code, entry_mode)
        if isinstance(fault, Flapping) and within(offset, fault.start_s, fault.end_s) \
                and int((offset - fault.start_s) // fault.period_s) % 2 == 0:
            return _failed(rng, fault.response_code, entry_mode)
        if isinstance(fault, ChipDegradation) and entry_mode == "chip" and offset >= fault.start_s:
            progress = min(1.0, (offset - fault.start_s) / max(fault.full_at_s - fault.start_s, 1e-9))
            if rng.random() < progress * fault.max_failure_share:
                if rng.random() < fault.fallback_share:
                    entry_mode = "fallback"  # chip read failed: the stripe is read (ISO 8583 field 22: 80)
                    break
                return fault.response_code, rng.lognormvariate(math.log(350.0), 0.3), "chip"
    latency = rng.lognormvariate(math.log(450.0 if channel == "ATM" else 300.0), 0.35)
    draw = rng.random() if normal_declines else 1.0
    for code, probability in mix.declines:
        if draw < probability:
            return code, latency, entry_mode
        draw -= probability
    return "00", latency, entry_mode


def _failed(rng: random.Random, code: str | None, entry_mode: str) -> Answer:
    """A terminal-level failure: a quick refusal, or a timeout (``code`` ``None``)."""
    if code is None:
        return None, AUTHORIZATION_TIMEOUT_MS, entry_mode
    return code, rng.lognormvariate(math.log(150.0), 0.3), entry_mode


def retrieval_reference(at: datetime, stan: int) -> str:
    """ISO 8583 field 37 (RRN): last digit of the year, day of the year, hour, STAN (12 digits)."""
    return f"{at.year % 10}{at.timetuple().tm_yday:03d}{at.hour:02d}{stan:06d}"
