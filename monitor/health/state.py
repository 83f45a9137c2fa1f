"""Health state per terminal (ok, degraded, failing, silent, offline) and the book holding it.

Rules: ``rules/health.yaml``, section ``state`` (documented in ``docs/terminal-health.md``).
A terminal's state is the most severe rule it meets — offline > silent > failing >
degraded > ok, which is also the order of the :class:`HealthState` values (the value of
``cardmon_terminal_health_state``) — and it carries the reasons of every rule it meets,
most severe first (e.g. ``"5m technical ratio 0.83 over 12 txns"``). The rules and how they
judge are :mod:`monitor.health.state_rules`; this module holds the book.

Inputs of the :class:`HealthBook`, each from its own source:

* :meth:`HealthBook.observe` — the classified batch frame (sliding windows);
* :meth:`HealthBook.apply_status` — device status changes (``StatusConsumer``'s
  ``on_change``), trusted to arrive in event-time order as ``DeviceStatusBook`` ensures;
* :meth:`HealthBook.mark_silent` — the silent-detection job's result (replaces the set);
* the terminal registry (optional): decommissioned terminals drop out, and it fills
  the model, region, branch and merchant of the aggregation.

:meth:`HealthBook.evaluate` recomputes everything and publishes it as one immutable
:class:`Evaluation`; readers (the Prometheus collector, on the HTTP server's thread) take
that one reference, so a scrape never mixes two evaluations. In the monitor the writers
and the evaluation run on the health thread (:class:`monitor.health.worker.HealthWorker`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import polars as pl

from monitor.errors import ConfigurationError
from monitor.health.aggregate import AggregateRules, group_stats, worst_terminals
from monitor.health.device_status import DeviceStatusEvent
from monitor.health.state_rules import HealthState, StateRules, component_reasons, judge
from monitor.health.terminals import TerminalRegistryLoader
from monitor.health.windows import FAILURE_CLASSES, TerminalWindows, WindowRules
from monitor.rulebook import RuleFile

__all__ = ["Evaluation", "HealthBook", "HealthRules"]


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthRules:
    """All of ``rules/health.yaml`` that the book uses: ``windows``, ``state``, ``aggregate``."""

    windows: WindowRules = field(default_factory=WindowRules)
    state: StateRules = field(default_factory=StateRules)
    aggregate: AggregateRules = field(default_factory=AggregateRules)

    def __post_init__(self) -> None:
        self.windows.span(self.state.failing_window)  # KeyError → caught by load
        self.windows.span(self.state.degraded_window)
        self.windows.span(self.aggregate.worst_window)

    @classmethod
    def load(cls, path: Path) -> HealthRules:
        """Read the three sections (each optional: defaults) of a health rules file.

        Raises:
            ValueError: the file is unreadable, or a section is invalid or names a
                window that ``windows`` does not define.
        """
        return cls.from_rules(RuleFile.read(path, error=ConfigurationError, what="health rules"))

    @classmethod
    def from_rules(cls, rules: RuleFile) -> HealthRules:
        """The three sections of the health rules file, read once at start (see :meth:`load`)."""
        data, path = rules.document if isinstance(rules.document, dict) else {}, rules.path
        try:
            return cls(
                windows=WindowRules.from_mapping(data.get("windows") or {}),
                state=StateRules.from_mapping(data.get("state") or {}),
                aggregate=AggregateRules.from_mapping(data.get("aggregate") or {}),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigurationError(f"{path}: {error}") from error


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    """One evaluation of the book, published as one reference (readers never see half of one).

    Attributes:
        snapshot: one row per terminal (see :meth:`HealthBook.snapshot`).
        states: ``terminal_id, value`` (UInt8 health state value), sorted.
        counts: terminals per state (every state present, 0 if none).
        components: ``(terminal_id, component, state)`` of every non-ok component.
        groups: per-group volumes and failure ratios (see :func:`group_stats`).
        worst: top-N worst terminals (see :func:`worst_terminals`).
    """

    snapshot: pl.DataFrame
    states: pl.DataFrame
    counts: dict[HealthState, int]
    components: list[tuple[str, str, str]]
    groups: pl.DataFrame
    worst: pl.DataFrame


class HealthBook:
    """Health state of every terminal, with its reasons and window statistics.

    Args:
        rules: windows, state and aggregation rules.
        registry: terminal registry holder (decommissioned status; model, region, branch
            and merchant for the aggregation), or ``None``.

    Not thread-safe for writers: call ``observe``, ``apply_status``, ``mark_silent`` and
    ``evaluate`` from one thread (in the monitor, the health thread of
    :class:`~monitor.health.worker.HealthWorker`); readers may call :attr:`published`,
    :meth:`snapshot` and the other getters from any thread (they return the immutable
    published :class:`Evaluation` or its parts).
    """

    def __init__(self, rules: HealthRules | None = None, *,
                 registry: TerminalRegistryLoader | None = None) -> None:
        self.rules = rules or HealthRules()
        self.registry = registry
        self.windows = TerminalWindows(self.rules.windows)
        self._components: dict[tuple[str, str], tuple[str, datetime]] = {}  # <(terminal, component): (state, at)> non-ok only
        self._status_seen: dict[str, datetime] = {}  # <terminal_id: latest status event time>
        self._silent: dict[str, datetime] = {}  # <terminal_id: first marked silent (this spell)>
        self._dropped: set[str] = set()  # dropped by retention; ignored by mark_silent until seen again
        empty = self._empty_snapshot()
        self._published = Evaluation(  # replaced whole by each evaluation, never mutated
            snapshot=empty, states=_states(empty), counts=dict.fromkeys(HealthState, 0), components=[],
            groups=pl.DataFrame(),
            worst=pl.DataFrame(schema={"rank": pl.UInt32, "terminal_id": pl.String,
                                       "failure_ratio": pl.Float64, "transactions": pl.UInt32}))

    def _empty_snapshot(self) -> pl.DataFrame:
        return self.windows.stats().with_columns(
            pl.lit(0, dtype=pl.UInt8).alias("state"), pl.lit("ok").alias("state_name"),
            pl.lit([], dtype=pl.List(pl.String)).alias("reasons"))

    # -- inputs ---------------------------------------------------------------------------

    def observe(self, frame: pl.DataFrame, now: datetime | None = None) -> None:
        """Feed one classified batch frame to the windows (see :meth:`TerminalWindows.observe`)."""
        if frame.height and self._dropped:
            self._dropped -= set(frame.get_column("terminal_id").unique().to_list())
        self.windows.observe(frame, now)

    def apply_status(self, events: Sequence[DeviceStatusEvent]) -> None:
        """Take device status changes (``StatusConsumer(on_change=book.apply_status)``).

        An event older than the one held for its component is ignored; ``ok`` clears
        the component.
        """
        for event in sorted(events, key=lambda e: e.occurred_at):
            key = (event.terminal_id, event.component)
            held = self._components.get(key)
            if held is not None and event.occurred_at < held[1]:
                continue
            if event.state == "ok":
                self._components.pop(key, None)
            else:
                self._components[key] = (event.state, event.occurred_at)
            seen = self._status_seen.get(event.terminal_id)
            if seen is None or event.occurred_at > seen:
                self._status_seen[event.terminal_id] = event.occurred_at
            self._dropped.discard(event.terminal_id)

    def mark_silent(self, ids: set[str], at: datetime) -> None:
        """Replace the set of silent terminals (``schedule_silent_detection(..., book.mark_silent)``).

        Args:
            ids: every terminal the detector finds silent now.
            at: when the detector ran (aware).
        """
        self._silent = {t: self._silent.get(t, at) for t in ids if t not in self._dropped}

    # -- evaluation -----------------------------------------------------------------------

    def evaluate(self, now: datetime) -> None:
        """Recompute every terminal's state, the groups and the worst terminals; publish them.

        The windows end at the event-time watermark, or at ``now`` if that is earlier.
        Terminals decommissioned in the registry, or without a transaction or status event
        for ``retention_seconds`` before ``now``, are dropped first.

        Args:
            now: the wall clock (aware).
        """
        rules = self.rules.state
        self._drop(now)
        watermark = self.windows.watermark
        end = min(now, watermark) if watermark is not None else now
        stats = self.windows.stats(end)
        # Known from status or silence only: no window row yet (anti-join in polars, not Python sets).
        extra = set(self._silent) | {t for t, _ in self._components} | set(self._status_seen)
        missing = pl.DataFrame({"terminal_id": list(extra)}, schema={"terminal_id": pl.String}).join(
            stats.select("terminal_id"), on="terminal_id", how="anti")
        if missing.height:
            stats = pl.concat([stats, missing], how="diagonal_relaxed")
            stats = stats.with_columns(pl.col("^.*_(transactions|failures|chip_reads|swipe_fallbacks)$")
                                       .fill_null(0), pl.col("consecutive_technical").fill_null(0),
                                       pl.col("chip_seen").fill_null(False))
            stats = stats.with_columns(pl.col(c).fill_null(0) for c in stats.columns
                                       if c.endswith(FAILURE_CLASSES))
        comps = component_reasons(self._components, rules)
        silent = pl.DataFrame({"terminal_id": list(self._silent),
                               "silent_since": list(self._silent.values())},
                              schema={"terminal_id": pl.String, "silent_since": pl.Datetime("us", "UTC")})
        frame = (stats.join(comps, on="terminal_id", how="left")
                 .join(silent, on="terminal_id", how="left"))
        frame = frame.with_columns(pl.col(f"c_{x}").fill_null([]) for x in ("offline", "failing", "degraded"))

        frame = judge(frame, rules)

        counts = dict.fromkeys(HealthState, 0)
        for value, count in frame.group_by("state").len().iter_rows():
            counts[HealthState(value)] = count
        registry = self.registry.current if self.registry is not None else None
        self._published = Evaluation(
            snapshot=frame, states=_states(frame), counts=counts,
            components=[(t, c, s) for (t, c), (s, _) in sorted(self._components.items())],
            groups=group_stats(frame, self.rules.aggregate, self.rules.windows, registry),
            worst=worst_terminals(frame, self.rules.aggregate))

    def _drop(self, now: datetime) -> None:
        """Forget decommissioned terminals and those with no sign of life for ``retention``.

        A sign of life is a transaction or a status event; a terminal known only from the
        silent detector counts from when it was first marked silent.
        """
        cutoff_us = _micros(now - timedelta(seconds=self.rules.state.retention_seconds))
        schema = {"terminal_id": pl.String, "last_us": pl.Int64}
        activity = pl.concat([
            self.windows.terminals.select("terminal_id", "last_us"), _times(self._status_seen, schema),
        ]).group_by("terminal_id").agg(pl.col("last_us").max())
        only_silent = _times(self._silent, schema).join(activity, on="terminal_id", how="anti")
        activity = pl.concat([activity, only_silent])
        stale = set(activity.filter(pl.col("last_us") < cutoff_us).get_column("terminal_id").to_list())
        gone = self.registry.current.decommissioned() if self.registry is not None else set()
        if gone:
            stale |= set(activity.filter(pl.col("terminal_id").is_in(list(gone)))
                         .get_column("terminal_id").to_list())
        if not stale:
            return
        self.windows.forget(stale)
        self._components = {k: v for k, v in self._components.items() if k[0] not in stale}
        self._status_seen = {t: at for t, at in self._status_seen.items() if t not in stale}
        self._silent = {t: at for t, at in self._silent.items() if t not in stale}
        self._dropped |= stale

    # -- published results ----------------------------------------------------------------

    @property
    def published(self) -> Evaluation:
        """The last evaluation, whole (one reference: read it once per scrape)."""
        return self._published

    def snapshot(self) -> pl.DataFrame:
        """The last evaluation: one row per terminal, sorted by ``terminal_id``.

        Returns:
            ``terminal_id``, ``state`` (UInt8, the :class:`HealthState` value),
            ``state_name``, ``reasons`` (list of short strings, most severe first),
            ``silent_since``, and the window statistics of :meth:`TerminalWindows.stats`.
        """
        return self._published.snapshot

    def terminal_state_frame(self) -> pl.DataFrame:
        """``terminal_id, value`` (UInt8 health state value), sorted: for a fast exposition path.

        The same frame object is returned until the next evaluation, so the exposition
        can cache its rendered text by identity.
        """
        return self._published.states

    def states_count(self) -> dict[HealthState, int]:
        """Terminals per state at the last evaluation (every state present, 0 if none)."""
        return dict(self._published.counts)

    def state_of(self, terminal_id: str) -> tuple[HealthState, list[str]] | None:
        """One terminal's state and reasons at the last evaluation, or ``None`` if unknown."""
        row = self._published.snapshot.filter(pl.col("terminal_id") == terminal_id)
        if row.height == 0:
            return None
        return HealthState(row.item(0, "state")), list(row.item(0, "reasons"))

    def components(self) -> list[tuple[str, str, str]]:
        """``(terminal_id, component, state)`` of every non-ok component at the last evaluation."""
        return self._published.components

    def groups(self) -> pl.DataFrame:
        """Per-group volumes and failure ratios at the last evaluation (see :func:`group_stats`)."""
        return self._published.groups

    def worst(self) -> pl.DataFrame:
        """Top-N worst terminals at the last evaluation (see :func:`worst_terminals`)."""
        return self._published.worst


def _times(times: dict[str, datetime], schema: Mapping[str, pl.DataType | type[pl.DataType]]) -> pl.DataFrame:
    """``terminal_id, last_us`` of a ``{terminal_id: aware datetime}`` dict, built by column."""
    return pl.DataFrame({"terminal_id": list(times), "last_us": [_micros(at) for at in times.values()]},
                        schema=schema)


def _states(snapshot: pl.DataFrame) -> pl.DataFrame:
    """``terminal_id, value``: the per-terminal state gauge's frame."""
    return snapshot.select("terminal_id", pl.col("state").alias("value"))
