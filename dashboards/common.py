"""Shared pieces of the cardmon dashboards: the datasource, panel helpers, JSON rendering.

Every dashboard is built with grafana-foundation-sdk (``1769699998!10.1.0``: types
and builders generated for Grafana 10.1.x) and refers to Prometheus through one
fixed datasource UID, :data:`DATASOURCE_UID`, the UID the provisioning file
``dashboards/provisioning/datasources/cardmon.yaml`` gives the datasource. A
dashboard imported into a Grafana whose Prometheus datasource has another UID
shows "datasource not found" on every panel; provision it with this UID (or
change it here and regenerate).

Panel helpers take the PromQL as :class:`Query` values so a dashboard module
reads as a list of titles, descriptions, units and expressions. Expressions use
the recording rules of ``rules/prometheus/cardmon.rules.yml`` where one fits
(5-minute windows, computed once by Prometheus); raw counters use Grafana's
``$__rate_interval`` (rates) and ``$__range`` (totals over the time picker).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders.common import (
    ReduceDataOptions,
    VizLegendOptions,
    VizTooltipOptions,
)
from grafana_foundation_sdk.builders.dashboard import (
    CustomVariable,
    Dashboard,
    QueryVariable,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog import variants
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BarGaugeDisplayMode,
    BigValueColorMode,
    BigValueGraphMode,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
    VizOrientation,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableRefresh,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from dashboards._constants import DATASOURCE_UID, GRAFANA_VERSION

__all__ = [
    "DATASOURCE",
    "DATASOURCE_UID",
    "GRAFANA_VERSION",
    "HEALTH_STATES",
    "QUANTILES",
    "Query",
    "bar_gauge",
    "channel_variable",
    "new_dashboard",
    "render",
    "stat_panel",
    "table_panel",
    "tier_variable",
    "timeseries_panel",
]

DATASOURCE: Final = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
#: ``cardmon_terminal_health_state`` values (issue 4) and the state names of ``cardmon_terminals``.
HEALTH_STATES: Final[tuple[str, ...]] = ("ok", "degraded", "failing", "silent", "offline")
#: The latency quantiles the ``...:quantile`` recording rules publish (rules/prometheus).
QUANTILES: Final[tuple[str, ...]] = ("0.5", "0.95", "0.99")

_GREEN: Final = "green"
_RED: Final = "red"
_ORANGE: Final = "orange"


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL target of a panel.

    Args:
        expr: the PromQL expression (may use ``$__rate_interval``, ``$__range`` and
            the dashboard's template variables).
        legend: Grafana legend format, e.g. ``{{channel}}``; ``__auto`` lets Grafana pick.
        instant: evaluate at the end of the range only (tables, stats, bar gauges).
    """

    expr: str
    legend: str = "__auto"
    instant: bool = False


def _targets(queries: Sequence[Query], *, table_format: bool = False,
             ) -> list[Builder[variants.Dataquery]]:
    targets: list[Builder[variants.Dataquery]] = []
    for index, query in enumerate(queries):
        target = (
            Dataquery()
            .expr(query.expr)
            .legend_format(query.legend)
            .ref_id(chr(ord("A") + index))
            .datasource(DATASOURCE)
        )
        if query.instant:
            target = target.instant()
        else:
            target = target.range()
        if table_format:
            target = target.format(PromQueryFormat.TABLE)
        targets.append(target)
    return targets


def _thresholds(warn: float | None, alarm: float | None) -> ThresholdsConfig:
    steps = [Threshold(value=None, color=_GREEN)]
    if warn is not None:
        steps.append(Threshold(value=warn, color=_ORANGE))
    if alarm is not None:
        steps.append(Threshold(value=alarm, color=_RED))
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps)


def timeseries_panel(
    title: str, description: str, unit: str, queries: Sequence[Query], *,
    width: int = 12, height: int = 8, min_value: float | None = 0,
    max_value: float | None = None,
) -> timeseries.Panel:
    """A time series panel with a table legend sorted by the latest value.

    Args:
        title: panel title (what the operator reads).
        description: what the panel shows, its unit and source metric.
        unit: Grafana unit id (``s``, ``percentunit``, ``reqps``, ``short``...).
        queries: the PromQL targets.
        width: grid columns out of 24.
        height: grid rows.
        min_value: y-axis minimum (``None`` for automatic).
        max_value: y-axis maximum (``None`` for automatic).

    Returns:
        The panel builder.
    """
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .legend(
            VizLegendOptions()
            .display_mode(LegendDisplayMode.TABLE)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
            .sort_by("Last *")
            .sort_desc(True)
        )
        .tooltip(VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING))
        .targets(_targets(queries))
    )
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    return panel


def stat_panel(
    title: str, description: str, unit: str, queries: Sequence[Query], *,
    width: int = 6, height: int = 4, warn: float | None = None, alarm: float | None = None,
) -> stat.Panel:
    """A stat panel showing the last value of each series, coloured by thresholds.

    Args:
        title: panel title.
        description: what the value means, its unit and source metric.
        unit: Grafana unit id.
        queries: the PromQL targets (usually instant).
        width: grid columns out of 24.
        height: grid rows.
        warn: value from which the background turns orange (``None``: never).
        alarm: value from which it turns red (``None``: never).

    Returns:
        The panel builder.
    """
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .color_mode(BigValueColorMode.BACKGROUND)
        .graph_mode(BigValueGraphMode.NONE)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(_thresholds(warn, alarm))
        .targets(_targets(queries))
    )


def bar_gauge(
    title: str, description: str, unit: str, queries: Sequence[Query], *,
    width: int = 12, height: int = 8, max_value: float | None = None,
    warn: float | None = None, alarm: float | None = None,
) -> bargauge.Panel:
    """A horizontal bar gauge, one bar per series (top-N lists, totals by label).

    Args:
        title: panel title.
        description: what the bars mean, their unit and source metric.
        unit: Grafana unit id.
        queries: the PromQL targets (usually instant).
        width: grid columns out of 24.
        height: grid rows.
        max_value: the full-bar value (``None``: the largest bar).
        warn: value from which a bar turns orange.
        alarm: value from which a bar turns red.

    Returns:
        The panel builder.
    """
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .orientation(VizOrientation.HORIZONTAL)
        .display_mode(BarGaugeDisplayMode.GRADIENT)
        .min(0)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(_thresholds(warn, alarm))
        .targets(_targets(queries))
    )
    if max_value is not None:
        panel = panel.max(max_value)
    return panel


def table_panel(
    title: str, description: str, queries: Sequence[Query], *, unit: str = "short",
    width: int = 12, height: int = 8, health_states: bool = False,
) -> table.Panel:
    """A table of instant query results, one row per series, value column last.

    Args:
        title: panel title.
        description: what a row is and what the value means.
        queries: the PromQL targets (instant, table format).
        unit: Grafana unit id of the value column.
        width: grid columns out of 24.
        height: grid rows.
        health_states: map the values 0..4 to the health state names of issue 4.

    Returns:
        The panel builder.
    """
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .show_header(True)
        .targets(_targets(queries, table_format=True))
    )
    if health_states:
        colours = ("green", "orange", "red", "purple", "dark-red")
        panel = panel.mappings([
            ValueMap(options={
                str(value): ValueMappingResult(text=name, color=colour, index=value)
                for value, (name, colour) in enumerate(zip(HEALTH_STATES, colours))
            })
        ])
    return panel


def channel_variable() -> CustomVariable:
    """``$channel``: transaction channel filter (ATM, POS, ECOM; all by default)."""
    return (
        CustomVariable("channel")
        .label("Channel")
        .values("ATM,POS,ECOM")
        .include_all(True)
        .all_value(".*")
        .multi(True)
    )


def tier_variable() -> QueryVariable:
    """``$tier``: VIP tier filter, from the tiers present in ``cardmon_vip_failures_total``."""
    return (
        QueryVariable("tier")
        .label("Tier")
        .datasource(DATASOURCE)
        .query("label_values(cardmon_vip_failures_total, tier)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True)
        .all_value(".*")
        .multi(True)
    )


def new_dashboard(title: str, uid: str, description: str) -> Dashboard:
    """A dashboard with cardmon's defaults: last 6 h, 30 s refresh, UTC, shared crosshair.

    Args:
        title: dashboard title.
        uid: stable UID (``push`` overwrites by it; links use it).
        description: one paragraph shown in the dashboard settings.

    Returns:
        The dashboard builder, without panels.
    """
    return (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["cardmon", "generated"])
        .editable()
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("utc")
        .tooltip(DashboardCursorSync.CROSSHAIR)
    )


def render(dashboard: Dashboard) -> str:
    """The dashboard as Grafana JSON: sorted keys, 2-space indent, trailing newline.

    Panel IDs are numbered 1, 2, ... in grid order (Grafana needs them unique
    within a dashboard; the SDK leaves them unset). The output is deterministic:
    building the same source twice gives the same bytes.

    Args:
        dashboard: the dashboard builder.

    Returns:
        The JSON text.
    """
    document: dict[str, Any] = json.loads(JSONEncoder().encode(dashboard.build()))
    for number, panel in enumerate(document.get("panels", []), start=1):
        panel["id"] = number
    # The SDK emits a random-looking zero UUID as each variable's id; Grafana
    # ignores it, and it is noise in review diffs.
    for variable in document.get("templating", {}).get("list", []):
        variable.pop("id", None)
    # The SDK writes ``"annotations": {}`` / ``"templating": {}`` when none are
    # set; Grafana iterates ``annotations.list`` (adding its built-in annotation
    # query there) and ``templating.list``.
    document.setdefault("annotations", {}).setdefault("list", [])
    document.setdefault("templating", {}).setdefault("list", [])
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
