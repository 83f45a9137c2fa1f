"""Fleet aggregation: volume and failure ratio by region, branch, merchant and model; worst terminals.

Works on the per-terminal frame the :class:`~monitor.health.state.HealthBook` publishes
(window statistics per terminal), so it costs one ``group_by`` per dimension per
evaluation, never per event. A terminal's group comes from its events (the latest
non-null ``region``, ``branch_id``, ``merchant_id``) and, where the events lack it, from
the terminal registry (which is the only source of the terminal ``model``); a terminal
with neither is in group ``"unknown"``.

Each dimension keeps at most ``max_groups`` groups (``rules/health.yaml``, section
``aggregate``): the largest by volume over the longest window keep their name, the rest
are summed into group ``"other"`` — so a metric never has more than ``max_groups + 1``
series per dimension and window, however many merchants the fleet serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import polars as pl

from monitor.errors import ConfigurationError
from monitor.health.terminals import TerminalRegistry
from monitor.health.windows import FAILURE_CLASSES, WindowRules

__all__ = ["DIMENSIONS", "OTHER", "UNKNOWN", "AggregateRules", "group_stats", "worst_terminals"]

#: Dimension (metric label value) → (event column, registry column).
DIMENSIONS: Final[dict[str, tuple[str | None, str]]] = {
    "region": ("region", "region"),
    "branch": ("branch_id", "branch_id"),
    "merchant": ("merchant_id", "merchant_id"),
    "model": (None, "model"),
}
#: Group of the terminals beyond a dimension's ``max_groups``.
OTHER: Final = "other"
#: Group of the terminals whose events and registry entry both lack the attribute.
UNKNOWN: Final = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class AggregateRules:
    """The ``aggregate`` section of ``rules/health.yaml`` (meaning of each value there)."""

    classes: tuple[str, ...] = ("technical", "terminal", "card")
    max_groups: dict[str, int] = field(default_factory=lambda: {
        "region": 50, "branch": 500, "merchant": 200, "model": 50})
    worst_n: int = 10
    worst_min_volume: int = 20
    worst_window: str = "1h"

    def __post_init__(self) -> None:
        bad = sorted(set(self.classes) - set(FAILURE_CLASSES))
        if bad or not self.classes:
            raise ConfigurationError(f"aggregate.classes: unknown outcome class(es) {bad}")
        unknown = sorted(set(self.max_groups) - set(DIMENSIONS))
        if unknown:
            raise ConfigurationError(f"aggregate.max_groups: unknown dimension(s) {unknown}")
        for key, value in {**self.max_groups, "worst_n": self.worst_n,
                           "worst_min_volume": self.worst_min_volume}.items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigurationError(f"aggregate: {key} must be a positive integer, not {value!r}")

    @classmethod
    def from_mapping(cls, section: dict[str, Any]) -> AggregateRules:
        """Build from the parsed ``aggregate`` section (``max_groups`` merges with the defaults).

        Raises:
            ValueError: unknown keys or invalid values.
        """
        unknown = sorted(set(section) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigurationError(f"unknown key(s) in 'aggregate': {', '.join(unknown)}")
        values = dict(section)
        if "classes" in values:
            values["classes"] = tuple(values["classes"])
        if "max_groups" in values:
            values["max_groups"] = {**cls().max_groups, **values["max_groups"]}
        return cls(**values)


def _attributes(frame: pl.DataFrame, registry: TerminalRegistry | None) -> pl.DataFrame:
    """``terminal_id`` + one String column per dimension (never null)."""
    base = frame
    have_registry = registry is not None and len(registry) > 0
    if have_registry:
        assert registry is not None
        table = registry.table.select("terminal_id", *[pl.col(c).alias(f"r_{c}") for c in
                                                        {r for _, r in DIMENSIONS.values()}])
        base = base.join(table, on="terminal_id", how="left")
    columns = []
    for dimension, (event_column, registry_column) in DIMENSIONS.items():
        sources = []
        if event_column is not None and event_column in base.columns:
            sources.append(pl.col(event_column))
        if have_registry:
            sources.append(pl.col(f"r_{registry_column}"))
        value = pl.coalesce(sources) if sources else pl.lit(None, dtype=pl.String)
        columns.append(value.cast(pl.String).fill_null(UNKNOWN).alias(f"g_{dimension}"))
    return base.select(pl.exclude("^r_.*$"), *columns)


def group_stats(frame: pl.DataFrame, rules: AggregateRules, windows: WindowRules,
                registry: TerminalRegistry | None = None) -> pl.DataFrame:
    """Volume and failure ratio per dimension, group and window.

    Args:
        frame: one row per terminal with the window statistics (``<w>_transactions``,
            ``<w>_<class>``) and the event attributes (``region``, ``branch_id``,
            ``merchant_id``), e.g. :meth:`HealthBook.snapshot`.
        rules: aggregation rules (failure classes, ``max_groups`` per dimension).
        windows: the windows to aggregate (each of ``windows.spans``).
        registry: fills attributes the events lack, and the model.

    Returns:
        ``dimension, group, window, terminals, transactions, failures, failure_ratio``
        (failures of ``rules.classes`` / transactions; null without traffic), sorted by
        dimension, window and descending transactions. Groups without any traffic in any
        window are left out.
    """
    names = [s.name for s in windows.spans]
    longest = max(windows.spans, key=lambda s: s.length_seconds).name
    schema = {"dimension": pl.String, "group": pl.String, "window": pl.String, "terminals": pl.UInt32,
              "transactions": pl.UInt64, "failures": pl.UInt64, "failure_ratio": pl.Float64}
    if frame.height == 0:
        return pl.DataFrame(schema=schema)
    attributed = _attributes(frame, registry)
    parts = []
    for dimension in DIMENSIONS:
        key = f"g_{dimension}"
        sums = attributed.group_by(key).agg(
            pl.len().cast(pl.UInt32).alias("terminals"),
            *[pl.col(f"{w}_transactions").sum().cast(pl.UInt64).alias(f"{w}_t") for w in names],
            *[pl.sum_horizontal([pl.col(f"{w}_{c}") for c in rules.classes]).sum().cast(pl.UInt64)
              .alias(f"{w}_f") for w in names],
        ).filter(pl.sum_horizontal([pl.col(f"{w}_t") for w in names]) > 0)
        ranked = sums.sort([f"{longest}_t", key], descending=[True, False])
        limit = rules.max_groups.get(dimension, 50)
        named = ranked.head(limit)
        rest = ranked.slice(limit)
        if rest.height:
            named = pl.concat([named, rest.select(pl.lit(OTHER).alias(key), pl.exclude(key).sum())
                               .cast(named.schema)])
        for w in names:
            parts.append(named.select(
                pl.lit(dimension).alias("dimension"), pl.col(key).alias("group"), pl.lit(w).alias("window"),
                "terminals", pl.col(f"{w}_t").alias("transactions"), pl.col(f"{w}_f").alias("failures"),
                pl.when(pl.col(f"{w}_t") > 0).then(pl.col(f"{w}_f") / pl.col(f"{w}_t")).alias("failure_ratio"),
            ))
    return pl.concat(parts).cast(schema).sort(  # type: ignore[arg-type]
        ["dimension", "window", "transactions", "group"], descending=[False, False, True, False])


def worst_terminals(frame: pl.DataFrame, rules: AggregateRules) -> pl.DataFrame:
    """The ``worst_n`` terminals with the highest failure ratio over ``worst_window``.

    Only terminals with at least ``worst_min_volume`` transactions in the window take part
    (a terminal with one failed transaction out of one is not the fleet's worst), and
    only those with at least one such failure.

    Returns:
        ``rank`` (1 = worst), ``terminal_id``, ``failure_ratio`` (failures of
        ``rules.classes`` / transactions) and ``transactions``; ties go to the larger
        volume, then the smaller terminal ID.
    """
    w = rules.worst_window
    volume = pl.col(f"{w}_transactions")
    ratio = pl.sum_horizontal([pl.col(f"{w}_{c}") for c in rules.classes]) / volume
    return (frame.filter((volume >= rules.worst_min_volume) & (ratio > 0))
            .select("terminal_id", ratio.alias("failure_ratio"), volume.cast(pl.UInt32).alias("transactions"))
            .sort(["failure_ratio", "transactions", "terminal_id"], descending=[True, True, False])
            .head(rules.worst_n)
            .with_row_index("rank", offset=1)
            .select(pl.col("rank").cast(pl.UInt32), "terminal_id", "failure_ratio", "transactions"))
