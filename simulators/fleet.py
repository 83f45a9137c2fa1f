"""A fleet of ATMs and POS terminals, its clients and their relationship managers.

One definition of the fleet for every simulator: :class:`Fleet` holds the
:class:`Terminal` values, the :class:`Customer` values (VIPs last, each with its
:class:`Card` values) and the relationship managers (:class:`monitor.domain.Manager`).
:func:`build_fleet` draws one from a seed (the synthetic source,
:mod:`simulators.sources.synthetic`, then draws its traffic); a scenario builds one from
its file (:func:`simulators.scenario.generation.scenario_fleet`: the terminals of its
``fleet`` section, its VIPs and managers). :func:`write_registry` writes a fleet's VIP registry as
the monitor reads it.

Everything is deterministic given a seed: the same arguments give the same fleet.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

from monitor.domain import Manager

__all__ = ["Card", "Customer", "Fleet", "Terminal", "build_fleet", "write_registry"]

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
    ``manager_id,name,email,phone,webhook_url,backup_manager_id,timezone,locale,recovery_follow_up``
    (``recovery_follow_up``: ``yes`` or ``no``, the manager's opt-in to recovery follow-ups).

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
    columns = ("manager_id", "name", "email", "phone", "webhook_url", "backup_manager_id", "timezone",
               "locale")
    pl.DataFrame(
        [{**{column: getattr(manager, column) for column in columns},
          "recovery_follow_up": "yes" if manager.recovery_follow_up else "no"}
         for manager in fleet.managers],
        schema={c: pl.String for c in (*columns, "recovery_follow_up")},
    ).write_csv(managers_path)
    return customers_path, managers_path
