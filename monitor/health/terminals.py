"""The terminal registry: where each terminal stands, what it is and when it is open.

One file, CSV or Parquet (chosen by suffix), read with polars. Columns:

* ``terminal_id`` (required; ISO 8583 field 41), unique;
* ``channel`` (``ATM``, ``POS``, ``ECOM``), ``model``, ``region``, ``branch_id``,
  ``merchant_id`` (ISO 8583 field 42): optional descriptive columns;
* ``timezone``: IANA zone of the terminal (default ``UTC``);
* ``opening_hours``: when the terminal is expected to trade (default ``24/7``),
  grammar below;
* ``status``: ``active`` (default) or ``decommissioned``.

Opening hours follow the grammar of :mod:`monitor.hours`.

A :class:`TerminalRegistry` is an immutable snapshot; :class:`TerminalRegistryLoader`
builds a new one when the file changes and swaps it in whole (as
:class:`monitor.pipeline.vips.RegistryLoader` does for the VIP registry). A terminal
the registry does not know is treated as open 24/7 in UTC.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from monitor.errors import ConfigurationError
from monitor.hours import OpeningHours, OpeningHoursError, Schedule
from monitor.tables import ReloadingTable, read_table

__all__ = [
    "Terminal",
    "TerminalRegistry",
    "TerminalRegistryError",
    "TerminalRegistryLoader",
    "is_open",
    "read_terminals",
]

log = logging.getLogger(__name__)

#: Optional columns with their default when absent or blank.
_DEFAULTS: Final = {
    "channel": None, "model": None, "region": None, "branch_id": None, "merchant_id": None,
    "timezone": "UTC", "opening_hours": "24/7", "status": "active",
}
_STATUSES: Final = ("active", "decommissioned")
_CHANNELS: Final = ("ATM", "POS", "ECOM")
#: Every column of :attr:`TerminalRegistry.table`, in order.
TERMINAL_COLUMNS: Final = ("terminal_id", *_DEFAULTS)


class TerminalRegistryError(ConfigurationError):
    """The terminal file is missing, unreadable or breaks the registry's rules."""


@dataclass(frozen=True, slots=True)
class Terminal:
    """One terminal of the registry (or the 24/7 UTC stand-in for an unknown one)."""

    terminal_id: str
    schedule: Schedule
    channel: str | None = None
    model: str | None = None
    region: str | None = None
    branch_id: str | None = None
    merchant_id: str | None = None
    status: str = "active"


def is_open(terminal: Terminal, at: datetime) -> bool:
    """Whether ``terminal`` is open at ``at`` (timezone-aware), in its own local time.

    Raises:
        ValueError: ``at`` is naive.
    """
    return terminal.schedule.is_open(at)


_ALWAYS: Final = Schedule(ZoneInfo("UTC"), OpeningHours.parse("24/7"))


@dataclass(frozen=True, slots=True)
class TerminalRegistry:
    """One consistent snapshot of the terminal registry.

    Attributes:
        table: one row per terminal, columns :data:`TERMINAL_COLUMNS` (all String,
            defaults filled in), sorted by ``terminal_id``.
        schedules: ``(timezone, opening_hours)`` text → parsed :class:`Schedule`; a
            fleet has few distinct schedules, so each is parsed and evaluated once.
        loaded_at: Unix time (seconds) when the snapshot was built.
    """

    table: pl.DataFrame
    schedules: dict[tuple[str, str], Schedule]
    loaded_at: float

    @classmethod
    def empty(cls) -> TerminalRegistry:
        """A registry that knows no terminal (every terminal is 24/7 in UTC)."""
        return cls(pl.DataFrame(schema={c: pl.String for c in TERMINAL_COLUMNS}), {}, time.time())

    def __len__(self) -> int:
        return self.table.height

    def get(self, terminal_id: str) -> Terminal | None:
        """The terminal with this ID, or ``None`` when the registry does not know it."""
        ids = self.table.get_column("terminal_id")
        if ids.len() == 0:
            return None
        position = min(int(ids.search_sorted(terminal_id, side="left")), ids.len() - 1)
        if ids[position] != terminal_id:
            return None
        row = self.table.row(position, named=True)
        schedule = self.schedules[(row["timezone"], row["opening_hours"])]
        return Terminal(terminal_id=terminal_id, schedule=schedule, channel=row["channel"],
                        model=row["model"], region=row["region"], branch_id=row["branch_id"],
                        merchant_id=row["merchant_id"], status=row["status"])

    def terminal(self, terminal_id: str) -> Terminal:
        """The terminal with this ID, or a 24/7 UTC stand-in for an unknown one."""
        return self.get(terminal_id) or Terminal(terminal_id=terminal_id, schedule=_ALWAYS)

    def decommissioned(self) -> set[str]:
        """IDs of the terminals whose status is ``decommissioned``."""
        return set(self.table.filter(pl.col("status") == "decommissioned")
                   .get_column("terminal_id").to_list())

    def schedule_frame(self, terminal_ids: pl.Series, at: datetime) -> pl.DataFrame:
        """Where each terminal's schedule stands at ``at``, vectorised over a fleet.

        Args:
            terminal_ids: String series of terminal IDs (unknown ones are 24/7 UTC).
            at: timezone-aware instant.

        Returns:
            ``terminal_id``, ``is_open`` (Boolean), ``open_since`` (Datetime UTC: start of
            the current open period, null when closed or always open) and ``timezone``,
            one row per input ID, same order. Each distinct schedule is evaluated once.
        """
        keys = pl.DataFrame({"terminal_id": terminal_ids.cast(pl.String)}).join(
            self.table.select("terminal_id", "timezone", "opening_hours"),
            on="terminal_id", how="left", maintain_order="left",
        ).with_columns(pl.col("timezone").fill_null("UTC"),
                       pl.col("opening_hours").fill_null("24/7"))
        rows = []
        for zone, hours in keys.select("timezone", "opening_hours").unique().iter_rows():
            schedule = self.schedules.get((zone, hours)) or (
                _ALWAYS if (zone, hours) == ("UTC", "24/7") else None)
            assert schedule is not None, f"schedule {(zone, hours)!r} was not parsed at load"
            rows.append((zone, hours, schedule.is_open(at), schedule.open_since(at)))
        evaluated = pl.DataFrame(rows, schema={"timezone": pl.String, "opening_hours": pl.String,
                                               "is_open": pl.Boolean,
                                               "open_since": pl.Datetime("us", "UTC")},
                                 orient="row")
        return keys.join(evaluated, on=["timezone", "opening_hours"], how="left",
                         maintain_order="left").select("terminal_id", "is_open", "open_since",
                                                       "timezone")


def _read_table(path: Path) -> pl.DataFrame:
    return read_table(path, error=TerminalRegistryError, what="terminal registry file")


def read_terminals(path: Path) -> TerminalRegistry:
    """Read and check the terminal registry file.

    Raises:
        TerminalRegistryError: the file is missing or unreadable, has no ``terminal_id``
            column, a terminal ID is blank or repeats, or a row has an unknown time
            zone, channel or status, or opening hours that break the grammar.
    """
    raw = _read_table(path)
    if "terminal_id" not in raw.columns:
        raise TerminalRegistryError(f"{path}: missing column terminal_id")
    try:
        table = raw.select(
            pl.col("terminal_id").cast(pl.String).str.strip_chars(),
            *[(pl.col(name).cast(pl.String).str.strip_chars().replace("", None)
               if name in raw.columns else pl.lit(None, dtype=pl.String)).fill_null(
                  pl.lit(default, dtype=pl.String)).alias(name)
              for name, default in _DEFAULTS.items()],
        ).sort("terminal_id")
    except pl.exceptions.PolarsError as error:
        raise TerminalRegistryError(f"{path}: {error}") from error
    blank = table.filter(pl.col("terminal_id").is_null() | (pl.col("terminal_id") == ""))
    if blank.height:
        raise TerminalRegistryError(f"{path}: {blank.height} row(s) have no terminal_id")
    repeated = table.filter(pl.col("terminal_id").is_duplicated())
    if repeated.height:
        raise TerminalRegistryError(f"{path}: terminal_id {repeated.item(0, 'terminal_id')!r} repeats")
    for column, allowed in (("status", _STATUSES), ("channel", _CHANNELS)):
        bad = table.filter(pl.col(column).is_not_null() & ~pl.col(column).is_in(allowed))
        if bad.height:
            raise TerminalRegistryError(
                f"{path}: terminal {bad.item(0, 'terminal_id')!r} has {column} "
                f"{bad.item(0, column)!r}; expected one of {', '.join(allowed)}")
    schedules: dict[tuple[str, str], Schedule] = {}
    for terminal_id, zone, hours in (table.unique(["timezone", "opening_hours"], keep="first")
                                     .select("terminal_id", "timezone", "opening_hours").iter_rows()):
        try:
            schedules[(zone, hours)] = Schedule(ZoneInfo(zone), OpeningHours.parse(hours))
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise TerminalRegistryError(
                f"{path}: terminal {terminal_id!r}: {error}" if isinstance(error, OpeningHoursError)
                else f"{path}: terminal {terminal_id!r} has unknown time zone {zone!r}") from error
    return TerminalRegistry(table=table, schedules=schedules, loaded_at=time.time())


class TerminalRegistryLoader(ReloadingTable[TerminalRegistry]):
    """Holds the current :class:`TerminalRegistry` and reloads it when the file changes.

    Args:
        path: the registry file; ``None`` = an empty registry (all terminals 24/7 UTC).

    A failed reload keeps the previous snapshot and is logged once per file version
    (the recipe is :class:`monitor.tables.ReloadingTable`'s).
    """

    what = "terminal registry"
    error = TerminalRegistryError
    logger = log

    def __init__(self, path: Path | None) -> None:
        super().__init__((path,), TerminalRegistry.empty())

    def _read(self) -> TerminalRegistry:
        path = self._paths[0]
        assert path is not None
        return read_terminals(path)

    def _unreadable(self, error: OSError) -> Exception:
        return TerminalRegistryError(f"terminal registry not found or unreadable: {self._paths[0]}")

    def _summary(self, snapshot: TerminalRegistry) -> str:
        return f"{len(snapshot)} terminals, {len(snapshot.schedules)} schedules"
        try:
            if self._stat() == self._signature:
                return False
            self.load()
            return True
        except (OSError, TerminalRegistryError) as error:
            self.reload_failures += 1
            try:
                signature: tuple[int, int] | None = self._stat()
            except OSError:
                signature = None
            if signature != self._last_failure:
                self._last_failure = signature
                log.error("terminal registry reload failed, keeping the previous one: %s",
                          str(error).splitlines()[0][:300])
            return False
