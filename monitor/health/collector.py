"""Prometheus collector for terminal health, built from the :class:`HealthBook` at scrape time.

Families (values documented in ``docs/terminal-health.md``):

* ``cardmon_terminal_health_state{terminal_id}`` — one series per terminal, value
  0 ok, 1 degraded, 2 failing, 3 silent, 4 offline (:class:`HealthState`);
* ``cardmon_terminals{state}`` — terminals per state, every state present;
* ``cardmon_terminal_component_state{terminal_id,component,state}`` — 1 for each
  component that is not ``ok`` (ok components have no series);
* ``cardmon_group_transactions{dimension,group,window}`` and
  ``cardmon_group_failure_ratio{dimension,group,window}`` — bounded by ``max_groups``
  per dimension (overflow in ``group="other"``);
* ``cardmon_worst_terminal_failure_ratio{rank,terminal_id}`` — the top N.

No child objects per terminal: each scrape takes the book's published evaluation (one
reference, :attr:`HealthBook.published`: never a half-evaluated book, never two
evaluations mixed); the families are built from it once, as frame-backed families
(``/metrics`` renders them from polars), and can be rendered ahead
(:meth:`HealthCollector.prepare`, on the health thread after each evaluation).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import polars as pl
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from monitor.health.state import Evaluation, HealthBook
from monitor.health.state_rules import HealthState
from monitor.metrics import FrameFamily

__all__ = ["HealthCollector"]

_STATE_NAME: Final = "cardmon_terminal_health_state"
_STATE_HELP: Final = ("Health state of the terminal (ISO 8583 field 41): 0 ok, 1 degraded, 2 failing, "
                      "3 silent, 4 offline; rules in rules/health.yaml.")
_COUNT_NAME: Final = "cardmon_terminals"
_COUNT_HELP: Final = "Terminals in each health state (ok, degraded, failing, silent, offline)."
_COMPONENT_NAME: Final = "cardmon_terminal_component_state"
_COMPONENT_HELP: Final = ("1 for each terminal component whose latest device status (card.terminal-status) "
                          "is not ok; ok components have no series.")
_GROUP_TXN_NAME: Final = "cardmon_group_transactions"
_GROUP_TXN_HELP: Final = ("Transactions in the sliding window (window label) per region, branch, merchant "
                          "or terminal model; groups beyond the configured maximum are summed in group other.")
_GROUP_RATIO_NAME: Final = "cardmon_group_failure_ratio"
_GROUP_RATIO_HELP: Final = ("Share (0..1) of the group's transactions in the sliding window that failed with "
                            "a technical, terminal or card outcome (aggregate.classes in rules/health.yaml).")
_COMPONENT_SCHEMA: Final = {"terminal_id": pl.String(), "component": pl.String(), "state": pl.String()}
_GROUP_SCHEMA: Final = {"dimension": pl.String(), "group": pl.String(), "window": pl.String(),
                        "transactions": pl.UInt64(), "failure_ratio": pl.Float64()}
_WORST_NAME: Final = "cardmon_worst_terminal_failure_ratio"
_WORST_HELP: Final = ("Failure ratio (0..1, technical+terminal+card) of the worst terminals over the "
                      "aggregate.worst_window (default 1 h), rank 1 = worst; only terminals with the "
                      "configured minimum volume.")


class HealthCollector:
    """The health families of a :class:`HealthBook`, registered like any collector.

    Args:
        book: the health book (evaluated elsewhere, e.g. by a scheduled job).
        terminal_states: whether to expose ``cardmon_terminal_health_state`` here; set it
            to ``False`` when a faster exposition path renders
            :meth:`terminal_state_frame` instead.

    The families of one evaluation are built once (frame-backed
    :class:`~monitor.metrics.FrameFamily` objects, rendered from polars by ``/metrics``)
    and reused by every scrape until the next evaluation; :meth:`prepare` builds,
    renders and compresses them ahead of the scrape.

    Usage: ``registry.register(HealthCollector(book))``.
    """

    def __init__(self, book: HealthBook, *, terminal_states: bool = True) -> None:
        self.book = book
        self.terminal_states = terminal_states
        self._cached: tuple[Evaluation, tuple[Metric, ...]] | None = None  # (evaluation, its families)

    def terminal_state_frame(self) -> pl.DataFrame:
        """``terminal_id, value``: the per-terminal health state (see :meth:`HealthBook.terminal_state_frame`)."""
        return self.book.terminal_state_frame()

    def describe(self) -> Iterator[Metric]:
        """Yield the families this collector exposes, without samples."""
        if self.terminal_states:
            yield GaugeMetricFamily(_STATE_NAME, _STATE_HELP, labels=["terminal_id"])
        yield GaugeMetricFamily(_COUNT_NAME, _COUNT_HELP, labels=["state"])
        yield GaugeMetricFamily(_COMPONENT_NAME, _COMPONENT_HELP, labels=["terminal_id", "component", "state"])
        yield GaugeMetricFamily(_GROUP_TXN_NAME, _GROUP_TXN_HELP, labels=["dimension", "group", "window"])
        yield GaugeMetricFamily(_GROUP_RATIO_NAME, _GROUP_RATIO_HELP, labels=["dimension", "group", "window"])
        yield GaugeMetricFamily(_WORST_NAME, _WORST_HELP, labels=["rank", "terminal_id"])

    def collect(self) -> Iterator[Metric]:
        """Yield the families built from the book's last evaluation."""
        yield from self._families()

    def prepare(self) -> None:
        """Build the last evaluation's families and render and compress their text now."""
        for family in self._families():
            if isinstance(family, FrameFamily):
                family.segment()

    def _families(self) -> tuple[Metric, ...]:
        evaluation = self.book.published  # one reference: every family from the same evaluation
        cached = self._cached
        if cached is None or cached[0] is not evaluation:
            cached = (evaluation, _families(evaluation, terminal_states=self.terminal_states))
            self._cached = cached
        return cached[1]


def _families(evaluation: Evaluation, *, terminal_states: bool) -> tuple[Metric, ...]:
    families: list[Metric] = []
    if terminal_states:
        families.append(FrameFamily(_STATE_NAME, _STATE_HELP, "gauge", evaluation.states,
                                    labels=["terminal_id"]))
    counts = GaugeMetricFamily(_COUNT_NAME, _COUNT_HELP, labels=["state"])
    for health_state, count in sorted(evaluation.counts.items()):
        counts.add_metric([HealthState(health_state).label], count)
    families.append(counts)
    components = pl.DataFrame(evaluation.components, schema=_COMPONENT_SCHEMA, orient="row")
    families.append(FrameFamily(_COMPONENT_NAME, _COMPONENT_HELP, "gauge",
                                components.with_columns(value=pl.lit(1.0)),
                                labels=["terminal_id", "component", "state"]))
    groups = evaluation.groups if evaluation.groups.height else pl.DataFrame(schema=_GROUP_SCHEMA)
    group_labels = ["dimension", "group", "window"]
    families.append(FrameFamily(_GROUP_TXN_NAME, _GROUP_TXN_HELP, "gauge", groups,
                                labels=group_labels, value="transactions"))
    # No traffic in this window: no ratio (null, not exposed), not 0.
    families.append(FrameFamily(_GROUP_RATIO_NAME, _GROUP_RATIO_HELP, "gauge", groups,
                                labels=group_labels, value="failure_ratio"))
    families.append(FrameFamily(_WORST_NAME, _WORST_HELP, "gauge",
                                evaluation.worst.with_columns(pl.col("rank").cast(pl.String)),
                                labels=["rank", "terminal_id"], value="failure_ratio"))
    return tuple(families)
