"""The VIP registry: clients, their tier and their own relationship manager.

Two files, CSV or Parquet (chosen by suffix), read with polars:

* customers: ``customer_id``, ``name``, ``tier``, ``manager_id`` and optional
  ``card_refs`` (card tokens/hashes of the client; ``;``-separated in CSV, a list
  in Parquet) so events that carry only a ``card_ref`` still find their client;
* managers: ``manager_id``, ``name``, ``email``, ``phone``, ``webhook_url``,
  ``backup_manager_id``, ``timezone`` (IANA name), ``locale`` (BCP 47: ``en``, ``fr``,
  ``zh-Hans``...; empty: ``en``; a language cardmon has no catalogue for is an error,
  like an unknown time zone) and optional ``channels``: the
  manager's channels per severity, e.g. ``high=email,apprise:tgram://...;low=email``
  (syntax in :mod:`monitor.alerts.routing`; it may hold Apprise tokens, so no error
  or log line quotes it); and the optional preferences ``working_hours``,
  ``quiet_hours`` (opening-hours grammar, e.g. ``Mo-Fr 08:00-18:00``), ``away_from``,
  ``away_until`` (a date or a local date and time) and ``digest_at`` (``HH:MM``),
  read in the manager's zone (:mod:`monitor.alerts.preferences`); ``notify_resolved``
  (``yes``/``no``, ``true``/``false``, ``1``/``0``; default no): a follow-up message
  when an incident that hit the manager's clients ends; ``recovery_follow_up`` (same
  spellings, default no): one short message when the recovery watch of a client's
  alert is decided (the client recovered, or made no successful transaction in time).

Names (clients' and managers') are PAN-scrubbed as they are read
(:func:`monitor.privacy.mask_pans`): a card number typed into a name never reaches the
store, a message or a page.

A :class:`VipRegistry` is an immutable snapshot; :class:`RegistryLoader` builds a
new one when either file changes and swaps it in whole, so a batch always sees
one consistent registry. Lookups are vectorised: a small registry's keys are hashed
each batch (``is_in`` and one join), a large one is searched with ``search_sorted`` on
its sorted key columns, so a batch costs milliseconds even with 1,000,000 clients (a
hash join would rebuild its table every batch).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from monitor.alerts.delivery.apprise import is_apprise_url
from monitor.alerts.preferences import PreferenceError, parse_away, parse_digest_at, parse_hours
from monitor.alerts.routing import ChannelPreferences, parse_channels
from monitor.domain import Manager
from monitor.errors import ConfigurationError
from monitor.frames import collect
from monitor.i18n import LocaleError, check_locale
from monitor.privacy import NFKC_DIGITS, PAN_MIN_DIGITS, mask_pans
from monitor.tables import ReloadingTable, read_table

__all__ = ["RegistryError", "RegistryLoader", "VipRegistry", "read_registry"]

log = logging.getLogger(__name__)

_CUSTOMER_COLUMNS: Final = ("customer_id", "name", "tier", "manager_id")
_MANAGER_COLUMNS: Final = ("manager_id", "name")
_MANAGER_OPTIONAL: Final = ("email", "phone", "webhook_url", "backup_manager_id", "timezone", "locale",
                             "channels", "working_hours", "quiet_hours", "away_from", "away_until",
                             "digest_at", "notify_resolved", "recovery_follow_up")
# Spellings of the yes/no columns notify_resolved and recovery_follow_up (empty: no).
_YES: Final = frozenset({"yes", "y", "true", "1"})
_NO: Final = frozenset({"no", "n", "false", "0", ""})
#: Registries with at most this many clients and cards together are looked up by hashing
#: their keys each batch (3 ms per 5,000 events at 1,000 clients), larger ones by binary
#: search in the sorted keys (~8 ms per 5,000 events at any size; hashing costs 22 ms at
#: 100,000 and 450 ms at 1,000,000).
_HASHED_LOOKUP_MAX: Final = 20_000
#: Columns :meth:`VipRegistry.lookup` adds to a frame.
LOOKUP_COLUMNS: Final = ("vip_customer_id", "customer_name", "tier", "manager_id")


class RegistryError(ConfigurationError):
    """A registry file is missing, unreadable or breaks the registry's rules."""


def _read_table(path: Path) -> pl.DataFrame:
    return read_table(path, error=RegistryError, what="registry file")


def _require(frame: pl.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RegistryError(f"{path}: missing column(s) {', '.join(missing)}")


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


# A character that is or NFKC-folds to a decimal digit: a name with fewer than
# PAN_MIN_DIGITS of them cannot hold a PAN, and is not scanned.
_DIGIT_LIKE: Final = "[\\d" + "".join(NFKC_DIGITS) + "]"


def _scrub_names(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """``frame`` with every PAN form in its text ``column`` masked (names with digits scanned)."""
    suspects = (
        frame.filter(pl.col(column).str.count_matches(_DIGIT_LIKE) >= PAN_MIN_DIGITS)
        .get_column(column)
        .unique()
        .to_list()
    )
    masked = {name: mask_pans(name) for name in suspects}
    changed = {name: scrubbed for name, scrubbed in masked.items() if scrubbed != name}
    if not changed:
        return frame
    log.warning("registry: a card number was masked in %d name(s)", len(changed))
    return frame.with_columns(pl.col(column).replace(changed))


@dataclass(frozen=True, slots=True)
class VipRegistry:
    """One consistent snapshot of the VIP registry.

    Attributes:
        customers: ``customer_id, customer_name, tier, manager_id`` sorted by ``customer_id``.
        cards: ``card_ref, customer_id`` sorted by ``card_ref``.
        managers: ``manager_id`` → :class:`Manager`.
        loaded_at: Unix time (seconds) when the snapshot was built.
    """

    customers: pl.DataFrame
    cards: pl.DataFrame
    managers: dict[str, Manager]
    loaded_at: float
    # <"client": the expression of each event's client key (see _lookup_hashed)>, built
    # on first use: it holds the registry's keys, built once per snapshot, not per batch.
    _plans: dict[str, pl.Expr] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def empty(cls) -> VipRegistry:
        """A registry with no VIP: every failure counts in metrics, none alerts."""
        return cls(
            customers=pl.DataFrame(schema={c: pl.String for c in
                                           ("customer_id", "customer_name", "tier", "manager_id")}),
            cards=pl.DataFrame(schema={"card_ref": pl.String, "customer_id": pl.String}),
            managers={},
            loaded_at=time.time(),
        )

    def __len__(self) -> int:
        return self.customers.height

    def _find(self, sorted_keys: pl.Series, keys: pl.Series) -> pl.Series:
        """Row index in ``sorted_keys`` of each key, null where the key is absent."""
        if sorted_keys.len() == 0:
            return pl.Series(values=[None] * keys.len(), dtype=pl.UInt32)
        position = sorted_keys.search_sorted(keys.fill_null(""), side="left")
        position = position.clip(0, sorted_keys.len() - 1)
        found = sorted_keys.gather(position) == keys
        return pl.select(
            pl.when(found.fill_null(False)).then(position).otherwise(None)
        ).to_series()

    def lookup(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Add the client of each event to ``frame``.

        The event's ``customer_id`` is used when the registry knows it, else its
        ``card_ref``. Adds ``vip_customer_id``, ``customer_name``, ``tier`` and
        ``manager_id`` (all null for a non-VIP event).

        Args:
            frame: must have ``customer_id`` and ``card_ref`` (String) columns.

        Returns:
            ``frame`` with the four columns added, same row order.
        """
        if frame.height == 0 or self.customers.height == 0:
            return frame.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in LOOKUP_COLUMNS)
        if self.customers.height + self.cards.height <= _HASHED_LOOKUP_MAX:
            return self._lookup_hashed(frame)
        return self._lookup_sorted(frame)

    def _lookup_hashed(self, frame: pl.DataFrame) -> pl.DataFrame:
        """:meth:`lookup` by hashing the registry's keys (cheapest for a small registry)."""
        client = self._plans.get("client")
        if client is None:
            # The client key: the event's customer_id when the registry knows it, else the
            # owner of its card; then one hash join (customer_id and card_ref are unique).
            customer = pl.col("customer_id").cast(pl.String)
            card_owner = pl.lit(None, dtype=pl.String)
            if self.cards.height:
                card_owner = pl.col("card_ref").replace_strict(
                    self.cards.get_column("card_ref"), self.cards.get_column("customer_id"),
                    default=None, return_dtype=pl.String)
            known = customer.is_in(self.customers.get_column("customer_id").implode())
            client = self._plans["client"] = pl.when(known).then(customer).otherwise(card_owner).alias("client")
        matched = collect(frame.lazy().select(client).join(
            self.customers.lazy(), left_on="client", right_on="customer_id", how="left",
            maintain_order="left", coalesce=False))  # the batch's one polars call
        found = [matched.get_column("customer_id").alias("vip_customer_id"),
                 *[matched.get_column(name) for name in ("customer_name", "tier", "manager_id")]]
        if any(column.name in frame.columns for column in found):
            return frame.with_columns(found)
        return frame.hstack(found)  # the columns added: no polars plan

    def _lookup_sorted(self, frame: pl.DataFrame) -> pl.DataFrame:
        """:meth:`lookup` by binary search in the sorted key columns (a large registry).

        The cost grows with the batch, not with the registry: hashing 1,000,000 clients
        and their cards costs ~0.45 s per batch, these searches ~8 ms.
        """
        ids = self.customers.get_column("customer_id")
        row = self._find(ids, frame.get_column("customer_id").cast(pl.String))
        if self.cards.height:
            card = self._find(self.cards.get_column("card_ref"), frame.get_column("card_ref").cast(pl.String))
            owner = self.cards.get_column("customer_id").gather(card)
            row = row.fill_null(self._find(ids, owner))  # the customer_id first, else the card's owner
        matched = self.customers.select(pl.all().gather(row))
        return frame.with_columns(
            matched.get_column("customer_id").alias("vip_customer_id"),
            matched.get_column("customer_name"),
            matched.get_column("tier"),
            matched.get_column("manager_id"),
        )

    def manager(self, manager_id: str) -> Manager | None:
        """The manager with this ID, or ``None``."""
        return self.managers.get(manager_id)


def read_registry(customers_path: Path, managers_path: Path) -> VipRegistry:
    """Read and check both registry files.

    Raises:
        RegistryError: a file is missing or unreadable, a required column is absent,
            a ``customer_id`` or ``manager_id`` repeats, a client has no tier or no
            manager or names an unknown manager, a manager's time zone is not an IANA
            zone, a manager's ``locale`` is not BCP 47 or a language cardmon has no
            catalogue for, a manager's ``channels`` is malformed, names ``email``/``webhook``
            without the address/URL or holds a URL Apprise does not know, or a
            Parquet column has a type that cannot be read as text, or a manager's
            ``working_hours``/``quiet_hours`` break the opening-hours grammar, an
            ``away_from``/``away_until`` is not a date (or ends before it starts) or
            ``digest_at`` is not ``HH:MM``.
    """
    managers_frame = _read_table(managers_path)
    _require(managers_frame, _MANAGER_COLUMNS, managers_path)
    managers: dict[str, Manager] = {}
    for record in managers_frame.iter_rows(named=True):
        manager_id = _clean(record["manager_id"])
        if manager_id is None:
            raise RegistryError(f"{managers_path}: a row has no manager_id")
        if manager_id in managers:
            raise RegistryError(f"{managers_path}: manager_id {manager_id!r} repeats")
        zone = _clean(record.get("timezone")) or "UTC"
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise RegistryError(f"{managers_path}: manager {manager_id!r} has unknown time zone {zone!r}") from error
        try:
            locale = check_locale(_clean(record.get("locale")))
        except LocaleError as error:
            raise RegistryError(f"{managers_path}: manager {manager_id!r}: {error}") from None
        email = _clean(record.get("email"))
        webhook_url = _clean(record.get("webhook_url"))
        preferences = _preferences(record.get("channels"), managers_path, manager_id,
                                   email=email, webhook_url=webhook_url)
        managers[manager_id] = Manager(
            manager_id=manager_id,
            name=mask_pans(_clean(record["name"]) or manager_id),
            email=email,
            phone=_clean(record.get("phone")),
            webhook_url=webhook_url,
            backup_manager_id=_clean(record.get("backup_manager_id")),
            timezone=zone,
            locale=locale,
            channels=preferences.channels,
            apprise_urls=preferences.apprise_urls,
            **_hours_and_absence(record, tz, managers_path, manager_id),
        )

    raw = _read_table(customers_path)
    _require(raw, _CUSTOMER_COLUMNS, customers_path)
    try:
        customers, cards = _customers_and_cards(raw, customers_path, managers)
    except pl.exceptions.PolarsError as error:  # a column of an unusable type (Parquet)
        raise RegistryError(f"{customers_path}: {error}") from error
    return VipRegistry(customers=customers, cards=cards, managers=managers, loaded_at=time.time())


def _preferences(value: object, path: Path, manager_id: str, *,
                 email: str | None, webhook_url: str | None) -> ChannelPreferences:
    """A manager's checked ``channels`` column (errors never quote the column: tokens)."""
    try:
        preferences = parse_channels(_clean(value))
    except ValueError as error:
        raise RegistryError(f"{path}: manager {manager_id!r}: {error}") from None
    keys = {key for keys in preferences.channels.values() for key in keys}
    for name, column, present in (("email", "email", email), ("webhook", "webhook_url", webhook_url)):
        if name in keys and not present:
            raise RegistryError(f"{path}: manager {manager_id!r}: channels names {name} "
                                f"but the manager has no {column}")
    for index, url in enumerate(preferences.apprise_urls):
        if not is_apprise_url(url):
            raise RegistryError(f"{path}: manager {manager_id!r}: Apprise URL #{index} in channels "
                                "is not a URL Apprise can send to")
    return preferences


def _hours_and_absence(record: dict[str, Any], zone: ZoneInfo, path: Path,
                       manager_id: str) -> dict[str, Any]:
    """A manager's checked preference columns, as :class:`Manager` keyword arguments."""
    try:
        hours = {column: _clean(record.get(column)) for column in ("working_hours", "quiet_hours")}
        for text in hours.values():
            if text is not None:
                parse_hours(text)
        away_from = parse_away(_clean(record.get("away_from")), zone, end=False)
        away_until = parse_away(_clean(record.get("away_until")), zone, end=True)
        digest_at = parse_digest_at(_clean(record.get("digest_at")))
    except PreferenceError as error:
        raise RegistryError(f"{path}: manager {manager_id!r}: {error}") from None
    if away_from is not None and away_until is not None and away_until <= away_from:
        raise RegistryError(f"{path}: manager {manager_id!r}: away_until is not after away_from")
    flags = {column: _yes_or_no(record.get(column), path, manager_id, column)
             for column in ("notify_resolved", "recovery_follow_up")}
    return {**hours, "away_from": away_from, "away_until": away_until, "digest_at": digest_at,
            **flags}


def _yes_or_no(flag: object, path: Path, manager_id: str, column: str) -> bool:
    """A manager's checked yes/no column (empty or absent: no)."""
    text = "" if flag is None else str(flag).strip().lower()
    if text not in _YES | _NO:
        raise RegistryError(f"{path}: manager {manager_id!r}: {column} must be yes or no, "
                            f"not {text!r}")
    return text in _YES


def _customers_and_cards(raw: pl.DataFrame, path: Path,
                         managers: dict[str, Manager]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The sorted ``customers`` and ``cards`` frames of a customers file (checked)."""
    customers = (
        raw.select(
            pl.col("customer_id").cast(pl.String).str.strip_chars(),
            pl.col("name").cast(pl.String).alias("customer_name"),
            pl.col("tier").cast(pl.String).str.strip_chars(),
            pl.col("manager_id").cast(pl.String).str.strip_chars(),
        )
        .filter(pl.col("customer_id").is_not_null() & (pl.col("customer_id") != ""))
        .sort("customer_id")
    )
    customers = _scrub_names(customers, "customer_name")
    if customers.get_column("customer_id").is_duplicated().any():
        first = customers.filter(pl.col("customer_id").is_duplicated()).item(0, "customer_id")
        raise RegistryError(f"{path}: customer_id {first!r} repeats")
    for column in ("tier", "manager_id"):
        # A client without a tier would never alert; one without a manager has nobody to tell.
        blank = customers.filter(pl.col(column).is_null() | (pl.col(column) == ""))
        if blank.height:
            raise RegistryError(f"{path}: {blank.height} client(s) have no {column}, "
                                f"e.g. customer {blank.item(0, 'customer_id')!r}")
    unknown = customers.filter(~pl.col("manager_id").is_in(list(managers)))
    if unknown.height:
        raise RegistryError(
            f"{path}: {unknown.height} client(s) name an unknown manager, "
            f"e.g. customer {unknown.item(0, 'customer_id')!r} → manager {unknown.item(0, 'manager_id')!r}"
        )

    cards = pl.DataFrame(schema={"card_ref": pl.String, "customer_id": pl.String})
    if "card_refs" in raw.columns:
        refs = raw.select(pl.col("customer_id").cast(pl.String).str.strip_chars(), pl.col("card_refs"))
        dtype = refs.schema["card_refs"]
        inner = dtype.inner if isinstance(dtype, pl.List) else dtype
        if not (inner == pl.String or inner.is_integer() or inner == pl.Null):
            raise RegistryError(f"{path}: card_refs must be text or a list of text, not {dtype}")
        if not isinstance(dtype, pl.List):
            # CSV text "tok_a;tok_b" (or a Parquet scalar column): one or more refs per client.
            refs = refs.with_columns(pl.col("card_refs").cast(pl.String).str.split(";"))
        cards = (
            refs.explode("card_refs")
            .select(pl.col("card_refs").cast(pl.String).str.strip_chars().alias("card_ref"), "customer_id")
            .filter(pl.col("card_ref").is_not_null() & (pl.col("card_ref") != ""))
            .unique("card_ref", keep="first", maintain_order=True)
            .sort("card_ref")
        )
    return customers, cards


class RegistryLoader(ReloadingTable[VipRegistry]):
    """Holds the current :class:`VipRegistry` and reloads it when a file changes.

    Args:
        customers_path: customers file; ``None`` with ``managers_path`` ``None`` = empty registry.
        managers_path: managers file.

    A failed reload keeps the previous snapshot and is logged (the monitor keeps
    alerting on yesterday's list rather than on none); the recipe is
    :class:`monitor.tables.ReloadingTable`'s.
    """

    what = "VIP registry"
    error = RegistryError
    logger = log

    def __init__(self, customers_path: Path | None, managers_path: Path | None) -> None:
        super().__init__((customers_path, managers_path), VipRegistry.empty())

    def load(self) -> VipRegistry:
        """Read the files now.

        Raises:
            RegistryError: a file is bad (see :func:`read_registry`), or only one of the
                two paths is configured (a half-configured registry would never alert).
        """
        customers_path, managers_path = self._paths
        if (customers_path is None) != (managers_path is None):
            raise RegistryError("the VIP registry needs both customers_path and managers_path; "
                                f"got customers={customers_path}, managers={managers_path}")
        return super().load()

    def _read(self) -> VipRegistry:
        customers_path, managers_path = self._paths
        assert customers_path is not None and managers_path is not None
        return read_registry(customers_path, managers_path)

    def _unreadable(self, error: OSError) -> Exception:
        return RegistryError(f"registry file not found or unreadable: {error.filename}")

    def _summary(self, snapshot: VipRegistry) -> str:
        return f"{len(snapshot)} clients, {len(snapshot.managers)} managers"
        try:
            if self._stat() == self._signature:
                return False
            self.load()
            return True
        except (OSError, RegistryError) as error:
            self.reload_failures += 1
            # Say it once per broken version of the files, not at every reload tick; the
            # message is cut: a parser's hint can quote raw rows (names, card tokens).
            signature = self._failed_signature()
            if signature != self._last_failure:
                self._last_failure = signature
                log.error("VIP registry reload failed, keeping the previous one: %s",
                          str(error).splitlines()[0][:300])
            return False
