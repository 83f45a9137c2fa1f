"""The ``state`` rules of terminal health and how they judge a terminal: ok, degraded, failing, silent, offline.

A terminal's state is the most severe rule it meets — offline > silent > failing >
degraded > ok, which is also the order of the :class:`HealthState` values (the value of
``cardmon_terminal_health_state``) — and it carries the reasons of every rule it meets,
most severe first (e.g. ``"5m technical ratio 0.83 over 12 txns"``). The rules are the
``state`` section of ``rules/health.yaml`` (:class:`StateRules`, documented in
``docs/terminal-health.md``); :func:`judge` applies them to one frame of every
terminal's window statistics and component states, for
:meth:`monitor.health.state.HealthBook.evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any, Final

import polars as pl

from monitor.errors import ConfigurationError
from monitor.health.windows import FAILURE_CLASSES

__all__ = ["HealthState", "StateRules", "component_reasons", "judge"]


class HealthState(IntEnum):
    """Health state of a terminal; the value is ``cardmon_terminal_health_state``'s."""

    OK = 0
    DEGRADED = 1
    FAILING = 2
    SILENT = 3
    OFFLINE = 4

    @property
    def label(self) -> str:
        """Lower-case name, as in metric labels and the docs (``"failing"``)."""
        return self.name.lower()


_LEVELS: Final = {s.label: s for s in HealthState}


def _components(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict) or not all(
            isinstance(v, list) and all(isinstance(s, str) for s in v) for v in value.values()):
        raise ConfigurationError(f"{where}.components must map a component to a list of states")
    return {str(k): tuple(v) for k, v in value.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class StateRules:
    """The ``state`` section of ``rules/health.yaml`` (meaning of each value there)."""

    retention_seconds: int = 7 * 24 * 3600
    offline_components: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"network": ("offline",)})
    failing_window: str = "5m"
    failing_classes: tuple[str, ...] = ("technical", "terminal")
    failing_min_volume: int = 10
    failing_ratio: float = 0.5
    failing_consecutive_technical: int = 5
    failing_components: dict[str, tuple[str, ...]] = field(default_factory=lambda: {
        "card_reader": ("fault", "offline"), "cash_dispenser": ("fault", "offline"),
        "pin_pad": ("fault", "offline")})
    degraded_window: str = "1h"
    degraded_classes: tuple[str, ...] = ("technical", "terminal", "card")
    degraded_min_volume: int = 20
    degraded_ratio: float = 0.2
    degraded_latency_p99_seconds: float = 5.0
    degraded_swipe_fallback_ratio: float = 0.1
    degraded_chip_card_failure_ratio: float = 0.2
    degraded_components: dict[str, tuple[str, ...]] = field(default_factory=lambda: {
        "cassette": ("low", "empty"), "receipt_printer": ("low", "empty"),
        "cash_dispenser": ("low", "empty")})

    @classmethod
    def from_mapping(cls, section: dict[str, Any]) -> StateRules:
        """Build from the parsed ``state`` section (nested ``offline``/``failing``/``degraded``).

        Raises:
            ValueError: an unknown key, class or value out of range.
        """
        flat: dict[str, Any] = {}
        for key, value in section.items():
            if key in ("offline", "failing", "degraded"):
                if not isinstance(value, dict):
                    raise ConfigurationError(f"state.{key} must be a mapping")
                for sub, item in value.items():
                    name = f"{key}_{sub}"
                    if sub == "components":
                        item = _components(item, f"state.{key}")
                    elif sub == "classes":
                        item = tuple(item)
                        bad = sorted(set(item) - set(FAILURE_CLASSES))
                        if bad or not item:
                            raise ConfigurationError(f"state.{key}.classes: unknown outcome class(es) {bad}")
                    flat[name] = item
            else:
                flat[key] = value
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(flat) - known)
        if unknown:
            raise ConfigurationError(f"unknown key(s) in 'state': {', '.join(unknown)}")
        rules = cls(**flat)
        for name in known:
            value = getattr(rules, name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                raise ConfigurationError(f"state: {name} must be positive, not {value!r}")
        return rules


def _ratio_reason(window: str, what: str, ratio: pl.Expr, volume: pl.Expr) -> pl.Expr:
    return pl.format(f"{window} {what} ratio {{}} over {{}} txns", ratio.round(2), volume)


def component_reasons(held: dict[tuple[str, str], tuple[str, datetime]],
                     rules: StateRules) -> pl.DataFrame:
    """``terminal_id`` + ``c_offline``/``c_failing``/``c_degraded`` reason lists, from non-ok components.

    Args:
        held: ``{(terminal_id, component): (state, since)}`` of the non-ok components.
        rules: which component states mean which level.
    """
    level_of: dict[tuple[str, str], str] = {}
    for level, mapping in (("degraded", rules.degraded_components), ("failing", rules.failing_components),
                           ("offline", rules.offline_components)):
        for component, states in mapping.items():
            for state in states:
                level_of[(component, state)] = level  # later (more severe) wins
    rows = [(t, level_of.get((c, s)), f"{c} {s}") for (t, c), (s, _) in sorted(held.items())]
    frame = pl.DataFrame(rows, schema={"terminal_id": pl.String, "level": pl.String, "reason": pl.String},
                         orient="row")
    wide = frame.filter(pl.col("level").is_not_null()).group_by("terminal_id").agg(
        *[pl.col("reason").filter(pl.col("level") == level).alias(f"c_{level}")
          for level in ("offline", "failing", "degraded")])
    return frame.select("terminal_id").unique().join(wide, on="terminal_id", how="left")


def judge(frame: pl.DataFrame, rules: StateRules) -> pl.DataFrame:
    """Every terminal's state and reasons, by the ``state`` rules.

    Args:
        frame: one row per terminal: the window statistics
            (:meth:`~monitor.health.windows.TerminalWindows.stats`), ``silent_since``
            (null unless silent) and the ``c_offline``, ``c_failing``, ``c_degraded``
            reason lists of :func:`component_reasons` (empty lists, not null).
        rules: the ``state`` rules.

    Returns:
        ``frame`` without the ``c_`` lists, with ``state`` (UInt8, the
        :class:`HealthState` value), ``reasons`` (most severe first) and
        ``state_name``, sorted by ``terminal_id``.
    """
    fw, dw = rules.failing_window, rules.degraded_window
    f_volume, d_volume = pl.col(f"{fw}_transactions"), pl.col(f"{dw}_transactions")
    f_ratio = pl.sum_horizontal([pl.col(f"{fw}_{c}") for c in rules.failing_classes]) / f_volume
    d_ratio = pl.sum_horizontal([pl.col(f"{dw}_{c}") for c in rules.degraded_classes]) / d_volume
    d_enough = d_volume >= rules.degraded_min_volume
    p99 = pl.col(f"{dw}_latency_p99_seconds")
    fallback = pl.col(f"{dw}_swipe_fallback_ratio")
    chip_card = pl.col(f"{dw}_chip_card_failure_ratio")
    f_what = "+".join(rules.failing_classes)
    d_what = "+".join(rules.degraded_classes)
    # (level, condition, reason) for the window rules; component rules come as lists.
    checks: list[tuple[HealthState, pl.Expr, pl.Expr]] = [
        (HealthState.SILENT, pl.col("silent_since").is_not_null(),
         pl.format("silent since {}", pl.col("silent_since").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))),
        (HealthState.FAILING, (f_volume >= rules.failing_min_volume) & (f_ratio >= rules.failing_ratio),
         _ratio_reason(fw, f_what, f_ratio, f_volume)),
        (HealthState.FAILING, pl.col("consecutive_technical") >= rules.failing_consecutive_technical,
         pl.format("{} consecutive technical failures", pl.col("consecutive_technical"))),
        (HealthState.DEGRADED, d_enough & (d_ratio >= rules.degraded_ratio),
         _ratio_reason(dw, d_what, d_ratio, d_volume)),
        (HealthState.DEGRADED, d_enough & (p99 > rules.degraded_latency_p99_seconds),
         pl.format(f"{dw} latency p99 {{}} s over {{}} txns", p99.round(2), d_volume)),
        (HealthState.DEGRADED, d_enough & (fallback >= rules.degraded_swipe_fallback_ratio),
         pl.format(f"{dw} chip fallback ratio {{}} over {{}} chip+fallback reads", fallback.round(2),
                   pl.col(f"{dw}_chip_reads") + pl.col(f"{dw}_swipe_fallbacks"))),
        (HealthState.DEGRADED, d_enough & (chip_card >= rules.degraded_chip_card_failure_ratio),
         pl.format(f"{dw} card failures on chip reads ratio {{}} over {{}} chip reads",
                   chip_card.round(2), pl.col(f"{dw}_chip_reads"))),
    ]

    def reasons_at(level: HealthState) -> list[pl.Expr]:
        exprs = [pl.when(cond.fill_null(False)).then(msg) for lvl, cond, msg in checks if lvl == level]
        column = {HealthState.OFFLINE: "c_offline", HealthState.FAILING: "c_failing",
                  HealthState.DEGRADED: "c_degraded"}.get(level)
        return exprs + ([pl.col(column)] if column else [])

    ordered = [e for level in sorted(HealthState, reverse=True) if level for e in reasons_at(level)]
    levels = [pl.when(cond.fill_null(False)).then(pl.lit(int(lvl))) for lvl, cond, _ in checks] + [
        pl.when(pl.col(f"c_{x}").list.len() > 0).then(pl.lit(int(_LEVELS[x])))
        for x in ("offline", "failing", "degraded")]
    frame = frame.with_columns(
        pl.max_horizontal(levels).fill_null(0).cast(pl.UInt8).alias("state"),
        pl.concat_list(ordered).list.drop_nulls().alias("reasons"),
    ).with_columns(
        pl.col("state").replace_strict({int(s): s.label for s in HealthState},
                                       return_dtype=pl.String).alias("state_name"),
    ).drop("c_offline", "c_failing", "c_degraded").sort("terminal_id")
    return frame
