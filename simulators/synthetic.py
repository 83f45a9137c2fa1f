"""A synthetic fleet of ATMs and POS terminals, its clients, and injected faults.

Everything is deterministic given a seed: :func:`build_fleet` draws the fleet
(terminals, clients with card tokens, a small VIP registry and its relationship
managers), :func:`synthetic_events` draws the traffic. The same seed, start time
and rate give the same events, byte for byte.

Traffic model (per event, Poisson arrivals at ``rate`` events/second):

* a terminal is drawn uniformly; an ATM does ``withdrawal`` (85 %) or
  ``balance_inquiry`` (amount 0), a POS does ``purchase`` read by chip (45 %),
  contactless (45 %) or swipe (10 %);
* a card is a VIP's with probability ``vip_share``, so a short demo (30–60 s at
  the default 200 events/s) shows a few VIP failures;
* response codes (ISO 8583 field 39, see ``rules/response_codes.yaml``):
  ``00`` about 96.5 %, then ``51`` insufficient funds, ``55`` incorrect PIN,
  ``05`` do not honour, ``54`` expired card (:data:`_NORMAL_CODES`);
* ``latency_ms`` is lognormal, median 300 ms at a POS and 450 ms at an ATM.

Faults are small frozen values applied on top, by offset from the start:

* :class:`TerminalFault`: one terminal fails everything in a window, with a
  response code (default ``58`` "transaction not permitted to terminal", terminal
  class) or, with ``response_code=None``, by timing out: ``status = "timeout"``,
  no response code, ``latency_ms`` = :data:`AUTHORIZATION_TIMEOUT_MS`;
* :class:`IssuerOutage`: a share of all transactions in a window get ``91``
  (issuer or switch inoperative, technical class) after a slow answer.
"""

from __future__ import annotations

import math
import random
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import polars as pl

from monitor.domain import Manager

__all__ = [
    "AUTHORIZATION_TIMEOUT_MS",
    "Card",
    "Customer",
    "Fault",
    "Fleet",
    "IssuerOutage",
    "Terminal",
    "TerminalFault",
    "build_fleet",
    "default_faults",
    "synthetic_events",
    "write_registry",
]

#: How long an acquirer waits for an authorization answer before it records a timeout.
AUTHORIZATION_TIMEOUT_MS: Final = 30_000.0
# (city, region, 3-letter code) where terminals stand.
_CITIES: Final = (
    ("Paris", "Île-de-France", "PAR"), ("Lyon", "Auvergne-Rhône-Alpes", "LYS"),
    ("Marseille", "Provence-Alpes-Côte d'Azur", "MRS"), ("Lille", "Hauts-de-France", "LIL"),
    ("Bordeaux", "Nouvelle-Aquitaine", "BOD"), ("Toulouse", "Occitanie", "TLS"),
    ("Nantes", "Pays de la Loire", "NTE"), ("Strasbourg", "Grand Est", "SXB"),
)
_FIRST_NAMES: Final = (
    "Camille", "Louis", "Chloé", "Hugo", "Léa", "Jules", "Manon", "Arthur", "Inès", "Gabriel",
    "Sarah", "Adam", "Alice", "Raphaël", "Emma", "Nathan", "Zoé", "Paul", "Lina", "Victor",
)
_LAST_NAMES: Final = (
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau", "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux",
)
_BINS: Final = ("497010", "535522", "413773", "520473")  # first six digits shown in pan_masked
#: VIP tiers, top first, with their share of VIP clients.
_TIERS: Final = (("private", 0.2), ("platinum", 0.3), ("gold", 0.5))
_MANAGER_ZONES: Final = ("Europe/Paris", "Europe/Paris", "Europe/London", "Europe/Paris")
#: Normal (fault-free) answers: response code and probability; the rest is 00.
_NORMAL_CODES: Final = (("51", 0.015), ("55", 0.008), ("05", 0.008), ("54", 0.004))
_WITHDRAWALS_MINOR: Final = (2_000, 4_000, 5_000, 6_000, 10_000, 20_000)
_PROCESSING_CODES: Final = {"purchase": "000000", "withdrawal": "010000", "balance_inquiry": "310000"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Terminal:
    """An ATM (with its branch) or a POS terminal (with its merchant ID)."""

    terminal_id: str  # 8 characters, ISO 8583 field 41
    channel: str  # "ATM" or "POS"
    city: str
    region: str
    merchant_id: str | None = None  # 15 characters, ISO 8583 field 42 (POS only)
    branch_id: str | None = None  # the bank branch housing the ATM


@dataclass(frozen=True, slots=True, kw_only=True)
class Card:
    """A card as events show it: a token and the PCI DSS masked PAN, never the PAN."""

    card_ref: str
    pan_masked: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Customer:
    """A client; ``tier`` and ``manager_id`` are set for VIP clients only."""

    customer_id: str
    name: str
    cards: tuple[Card, ...]
    tier: str | None = None
    manager_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fleet:
    """Terminals, clients (VIPs last) and the relationship managers of the VIPs."""

    terminals: tuple[Terminal, ...]
    customers: tuple[Customer, ...]
    managers: tuple[Manager, ...]
    currency: str = "EUR"

    @property
    def vips(self) -> tuple[Customer, ...]:
        """The clients in the VIP registry."""
        return tuple(customer for customer in self.customers if customer.tier is not None)


@dataclass(frozen=True, slots=True)
class TerminalFault:
    """One terminal fails every transaction from ``start_offset_s`` to ``end_offset_s``.

    Offsets are seconds after the start of the traffic. ``response_code=None`` means
    the terminal times out (``status = "timeout"``, no response code).
    """

    terminal_id: str
    start_offset_s: float
    end_offset_s: float
    response_code: str | None = "58"


@dataclass(frozen=True, slots=True)
class IssuerOutage:
    """A burst of issuer failures across the fleet: ``share`` of transactions get ``response_code``."""

    start_offset_s: float
    duration_s: float
    share: float = 0.7
    response_code: str = "91"


Fault = TerminalFault | IssuerOutage


def _ascii(text: str) -> str:
    """``text`` without accents (``Chloé`` -> ``Chloe``), for e-mail local parts."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _masked_pan(rng: random.Random) -> str:
    return rng.choice(_BINS) + "******" + f"{rng.randrange(10_000):04d}"


def build_fleet(
    *, terminals: int = 50, customers: int = 2_000, vips: int = 24, managers: int = 4,
    atm_share: float = 0.3, currency: str = "EUR", webhook_base_url: str | None = None,
    seed: int = 7,
) -> Fleet:
    """Draw a fleet of terminals and clients.

    Args:
        terminals: number of terminals (at least 2: one ATM and one POS are guaranteed).
        customers: number of clients, VIPs included.
        vips: how many clients are in the VIP registry (tiers private/platinum/gold).
        managers: number of relationship managers; each backs up the next one.
        atm_share: share of terminals that are ATMs.
        currency: ISO 4217 currency of every amount.
        webhook_base_url: if given, each manager's webhook is ``{base}/{manager_id}``.
        seed: random seed; the same arguments give the same fleet.

    Returns:
        The :class:`Fleet`.

    Raises:
        ValueError: fewer than 2 terminals, ``vips`` above ``customers``, or no manager.
    """
    if terminals < 2 or vips > customers or managers < 1:
        raise ValueError("need >= 2 terminals, vips <= customers and >= 1 manager")
    rng = random.Random(f"fleet-{seed}")
    atms = min(max(1, round(terminals * atm_share)), terminals - 1)
    fleet_terminals = []
    for number in range(terminals):
        city, region, code = _CITIES[number % len(_CITIES)]
        if number < atms:
            fleet_terminals.append(Terminal(
                terminal_id=f"A{code}{number:04d}", channel="ATM", city=city, region=region,
                branch_id=f"BR-{code}-{number % 5 + 1:02d}",
            ))
        else:
            fleet_terminals.append(Terminal(
                terminal_id=f"P{code}{number:04d}", channel="POS", city=city, region=region,
                merchant_id=f"{rng.randrange(10**14, 10**15)}",
            ))
    fleet_managers = []
    for number in range(managers):
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        manager_id = f"RM{number + 1:03d}"
        fleet_managers.append(Manager(
            manager_id=manager_id, name=f"{first} {last}",
            email=_ascii(f"{first}.{last}@bank.example".lower()),
            phone=f"+33 1 55 00 {number // 100:02d} {number % 100:02d}",
            webhook_url=f"{webhook_base_url.rstrip('/')}/{manager_id}" if webhook_base_url else None,
            backup_manager_id=f"RM{(number + 1) % managers + 1:03d}" if managers > 1 else None,
            timezone=_MANAGER_ZONES[number % len(_MANAGER_ZONES)],
        ))
    tiers = [name for name, _ in _TIERS]
    weights = [share for _, share in _TIERS]
    fleet_customers = []
    for number in range(customers):
        is_vip = number >= customers - vips
        cards = tuple(
            Card(card_ref=f"tok_{rng.getrandbits(64):016x}", pan_masked=_masked_pan(rng))
            for _ in range(2 if is_vip and rng.random() < 0.5 else 1)
        )
        fleet_customers.append(Customer(
            customer_id=f"C{number + 1:07d}",
            name=f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
            cards=cards,
            tier=rng.choices(tiers, weights)[0] if is_vip else None,
            manager_id=fleet_managers[number % managers].manager_id if is_vip else None,
        ))
    return Fleet(terminals=tuple(fleet_terminals), customers=tuple(fleet_customers),
                 managers=tuple(fleet_managers), currency=currency)


def write_registry(fleet: Fleet, directory: str | Path) -> tuple[Path, Path]:
    """Write the fleet's VIP registry as ``customers.csv`` and ``managers.csv``.

    The files have the columns :mod:`monitor.pipeline.vips` reads:
    ``customer_id,name,tier,manager_id,card_refs`` (``card_refs`` ``;``-separated) and
    ``manager_id,name,email,phone,webhook_url,backup_manager_id,timezone``.

    Args:
        fleet: the fleet whose VIPs and managers are written.
        directory: created if missing; existing files are replaced.

    Returns:
        The paths of ``customers.csv`` and ``managers.csv``.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    customers_path, managers_path = folder / "customers.csv", folder / "managers.csv"
    pl.DataFrame(
        [{"customer_id": c.customer_id, "name": c.name, "tier": c.tier,
          "manager_id": c.manager_id, "card_refs": ";".join(card.card_ref for card in c.cards)}
         for c in fleet.vips],
        schema={c: pl.String for c in ("customer_id", "name", "tier", "manager_id", "card_refs")},
    ).write_csv(customers_path)
    columns = ("manager_id", "name", "email", "phone", "webhook_url", "backup_manager_id", "timezone")
    pl.DataFrame(
        [{column: getattr(manager, column) for column in columns} for manager in fleet.managers],
        schema={c: pl.String for c in columns},
    ).write_csv(managers_path)
    return customers_path, managers_path


def default_faults(fleet: Fleet, duration_s: float = 60.0) -> tuple[Fault, ...]:
    """The demo scenario, scaled to ``duration_s`` seconds of traffic.

    The first ATM times out from 15 % to 55 % of the run, the first POS answers
    ``58`` from 35 % to 75 %, and an issuer outage gives ``91`` to 70 % of all
    transactions for 10 % of the run (at least 3 s) from 60 %.
    """
    atm = next(t for t in fleet.terminals if t.channel == "ATM")
    pos = next(t for t in fleet.terminals if t.channel == "POS")
    return (
        TerminalFault(atm.terminal_id, 0.15 * duration_s, 0.55 * duration_s, response_code=None),
        TerminalFault(pos.terminal_id, 0.35 * duration_s, 0.75 * duration_s, response_code="58"),
        IssuerOutage(0.6 * duration_s, max(3.0, 0.1 * duration_s), share=0.7, response_code="91"),
    )


def _answer(rng: random.Random, terminal: Terminal, offset: float,
            faults: Sequence[Fault]) -> tuple[str | None, float]:
    """(response code or None for a timeout, latency in ms) of one transaction."""
    for fault in faults:
        if (isinstance(fault, TerminalFault) and fault.terminal_id == terminal.terminal_id
                and fault.start_offset_s <= offset < fault.end_offset_s):
            if fault.response_code is None:
                return None, AUTHORIZATION_TIMEOUT_MS
            return fault.response_code, rng.lognormvariate(math.log(150.0), 0.3)
    for fault in faults:
        if (isinstance(fault, IssuerOutage)
                and fault.start_offset_s <= offset < fault.start_offset_s + fault.duration_s
                and rng.random() < fault.share):
            # The switch gives up on the issuer after its own, shorter timeout.
            return fault.response_code, rng.lognormvariate(math.log(8_000.0), 0.2)
    median = 450.0 if terminal.channel == "ATM" else 300.0
    latency = rng.lognormvariate(math.log(median), 0.35)
    draw = rng.random()
    for code, probability in _NORMAL_CODES:
        if draw < probability:
            return code, latency
        draw -= probability
    return "00", latency


def synthetic_events(
    fleet: Fleet, *, start: datetime | None = None, rate: float = 200.0,
    duration_s: float | None = None, faults: Sequence[Fault] = (), vip_share: float = 0.06,
    seed: int = 7,
) -> Iterator[dict[str, Any]]:
    """Generate the fleet's traffic as contract-v1 event dicts.

    Args:
        fleet: from :func:`build_fleet`.
        start: time of the traffic's start (aware); ``None`` is now (UTC).
        rate: mean events per second of event time (Poisson arrivals).
        duration_s: stop after this many seconds of event time; ``None`` never stops.
        faults: :class:`TerminalFault` and :class:`IssuerOutage` values to apply.
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
        if terminal.channel == "ATM":
            txn_type = "withdrawal" if rng.random() < 0.85 else "balance_inquiry"
            amount = rng.choice(_WITHDRAWALS_MINOR) if txn_type == "withdrawal" else 0
            entry_mode, mti = "chip", "0200"
        else:
            txn_type, mti = "purchase", "0100"
            amount = min(500_000, max(50, round(rng.lognormvariate(math.log(2_500), 1.0))))
            entry_mode = rng.choices(("chip", "contactless", "swipe"), (0.45, 0.45, 0.10))[0]
        code, latency = _answer(rng, terminal, offset, faults)
        stan = stans[terminal.terminal_id]
        stans[terminal.terminal_id] = (stan + 1) % 1_000_000
        event.update(
            txn_type=txn_type, amount_minor=amount, currency=fleet.currency,
            card_ref=card.card_ref, pan_masked=card.pan_masked, customer_id=customer.customer_id,
            status="completed" if code is not None else "timeout",
            latency_ms=round(latency, 1), entry_mode=entry_mode,
            city=terminal.city, region=terminal.region, mti=mti,
            processing_code=_PROCESSING_CODES[txn_type], stan=f"{stan:06d}",
            # Retrieval reference number: last digit of year, day of year, hour, STAN.
            rrn=f"{at.year % 10}{at.timetuple().tm_yday:03d}{at.hour:02d}{stan:06d}",
        )
        if code is not None:
            event["response_code"] = code
        if terminal.merchant_id is not None:
            event["merchant_id"] = terminal.merchant_id
        if terminal.branch_id is not None:
            event["branch_id"] = terminal.branch_id
        yield event
