"""The report's plots (matplotlib), each an SVG ``data:`` URI the page embeds: no file, no request.

Built on :class:`matplotlib.figure.Figure` directly (no ``pyplot``: no global state, no
GUI backend, safe in any thread). SVG text is drawn as paths, so a plot looks the same
where the reader's fonts differ; ``svg.hashsalt`` and no ``Date`` metadata make the same
numbers give the same bytes. Math text is off (``text.parse_math``): a manager named
``Ann $5 and $10`` is drawn as written, never parsed as TeX. Each function takes numbers
already counted (:mod:`monitor.report.data`) and returns a :class:`Plot` (the URI and its
text alternative, for readers who cannot see it).
"""

from __future__ import annotations

import base64
import functools
import io
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final, ParamSpec, TypeVar

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from monitor.report.data import ManagerSummary, nearest_rank
from monitor.report.words import CLASS_WORDS, OUTCOME_WORDS, RECOVERY_WORDS, words

__all__ = ["Plot", "failures_by_day", "manager_times", "outcomes", "recovery", "times"]

# One colour per outcome class, the same in every plot (colour-blind-safe Okabe–Ito palette).
_CLASS_COLOURS: Final = {
    "technical": "#0072B2",
    "terminal": "#D55E00",
    "card": "#E69F00",
    "customer": "#009E73",
    "fraud": "#CC79A7",
    "unknown": "#999999",
    "approved": "#56B4E9",
}
_BAR: Final = "#0072B2"
_SECOND: Final = "#E69F00"

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _plain_text(plot: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``plot`` with math text off: every text (labels, ticks, legends) drawn as written."""

    @functools.wraps(plot)
    def plain(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with matplotlib.rc_context({"text.parse_math": False}):
            return plot(*args, **kwargs)

    return plain


@dataclass(frozen=True, slots=True)
class Plot:
    """One plot: an ``image/svg+xml`` data URI and its text alternative."""

    uri: str
    alt: str


def _plot(figure: Figure, alt: str) -> Plot:
    out = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "cardmon-report", "svg.fonttype": "path"}):
        figure.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    return Plot(
        "data:image/svg+xml;base64," + base64.b64encode(out.getvalue()).decode("ascii"), alt
    )


def _figure(height: float = 3.2) -> Figure:
    figure = Figure(figsize=(8, height), layout="constrained")
    return figure


def _empty(figure: Figure, text: str) -> None:
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, color="#444")


@_plain_text
def failures_by_day(by_day: dict[date, dict[str, int]]) -> Plot:
    """Stacked bars: VIP failures per day, one colour per outcome class."""
    figure = _figure()
    days = sorted(by_day)
    classes = sorted(
        {c for counts in by_day.values() for c in counts},
        key=lambda c: (list(_CLASS_COLOURS).index(c) if c in _CLASS_COLOURS else 99, c),
    )
    total = sum(sum(counts.values()) for counts in by_day.values())
    if not total:
        _empty(figure, "No VIP failure in the period")
        return _plot(figure, "No VIP failure in the period.")
    axes = figure.add_subplot()
    labels = [d.strftime("%d %b") for d in days]
    bottom = [0] * len(days)
    for outcome in classes:
        heights = [by_day[d].get(outcome, 0) for d in days]
        axes.bar(
            labels,
            heights,
            bottom=bottom,
            label=words(CLASS_WORDS, outcome),
            color=_CLASS_COLOURS.get(outcome, "#777777"),
        )
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.set_ylabel("VIP failures")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    if len(days) > 14:
        axes.tick_params(axis="x", labelrotation=90, labelsize=7)
    busiest = max(days, key=lambda d: sum(by_day[d].values()))
    return _plot(
        figure,
        f"VIP failures per day by cause: {total} in all over {len(days)} days; "
        f"the busiest day was {busiest.isoformat()} "
        f"with {sum(by_day[busiest].values())}.",
    )


@_plain_text
def times(acknowledge: Sequence[float], contact: Sequence[float]) -> Plot:
    """Histograms (minutes): times to acknowledge and to first contact, median and p90 marked."""
    figure = _figure(3.0)
    panels = figure.subplots(1, 2, sharey=False)
    alt = []
    for axes, values, title in (
        (panels[0], acknowledge, "Time to acknowledge"),
        (panels[1], contact, "Time to first contact"),
    ):
        axes.set_title(title, fontsize=10)
        axes.spines[["top", "right"]].set_visible(False)
        if not values:
            axes.set_axis_off()
            axes.text(
                0.5,
                0.5,
                "No alert reached this step",
                ha="center",
                va="center",
                transform=axes.transAxes,
                color="#444",
            )
            alt.append(f"{title}: no alert reached this step.")
            continue
        minutes = [v / 60 for v in values]
        axes.hist(minutes, bins=min(20, max(5, len(minutes))), color=_BAR)
        median = statistics.median(minutes)
        p90 = nearest_rank(minutes, 90)
        axes.axvline(
            median, color="#111", linestyle="-", linewidth=1.2, label=f"median {median:.1f} min"
        )
        axes.axvline(p90, color="#111", linestyle="--", linewidth=1.2, label=f"p90 {p90:.1f} min")
        axes.set_xlabel("minutes after the alert was recorded")
        axes.set_ylabel("alerts")
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        # Median and p90 in the title, not a legend that could hide bars.
        axes.set_title(f"{title}\nmedian {median:.1f} min (solid), p90 {p90:.1f} min (dashed)",
                       fontsize=10)
        alt.append(
            f"{title}: {len(values)} alerts, median {median:.1f} minutes, p90 {p90:.1f} minutes."
        )
    return _plot(figure, " ".join(alt))


@_plain_text
def _horizontal(counts: dict[str, int], table: dict[str, str], colour: str, what: str) -> Plot:
    figure = _figure(0.45 * len(counts) + 0.8)
    if not sum(counts.values()):
        _empty(figure, f"No {what} in the period")
        return _plot(figure, f"No {what} in the period.")
    axes = figure.add_subplot()
    labels = [words(table, code) for code in counts]
    values = list(counts.values())
    bars = axes.barh(labels, values, color=colour)
    axes.bar_label(bars, padding=3, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel(what)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.spines[["top", "right"]].set_visible(False)
    return _plot(
        figure,
        "; ".join(f"{label}: {value}" for label, value in zip(labels, values, strict=True)) + ".",
    )


def outcomes(counts: dict[str, int]) -> Plot:
    """Horizontal bars: alerts per resolution outcome (what the manager did)."""
    return _horizontal(counts, OUTCOME_WORDS, _BAR, "alerts")


def recovery(counts: dict[str, int]) -> Plot:
    """Horizontal bars: alerts per recovery status (did the client complete their transaction)."""
    return _horizontal(counts, RECOVERY_WORDS, _SECOND, "alerts")


@_plain_text
def manager_times(managers: Sequence[ManagerSummary]) -> Plot:
    """Grouped bars per manager: median times to acknowledge and to first contact (minutes)."""
    if not any(m.acknowledge.count or m.first_contact.count for m in managers):
        figure = _figure(0.5 * len(managers) + 1.0)
        _empty(figure, "No acknowledged alert in the period")
        return _plot(figure, "No acknowledged alert in the period.")
    figure, acknowledge, contact = _manager_times_figure(managers)
    return _plot(
        figure,
        "Per manager, median minutes to acknowledge and to first contact: "
        + "; ".join(
            f"{m.manager_name}: {a:.1f} and {c:.1f}"
            for m, a, c in zip(managers, acknowledge, contact, strict=True)
        )
        + ".",
    )


def _manager_times_figure(
    managers: Sequence[ManagerSummary],
) -> tuple[Figure, list[float], list[float]]:
    """The per-manager figure (legend above the axes, never on the bars) and its minutes."""
    figure = _figure(0.5 * len(managers) + 1.4)
    axes = figure.add_subplot()
    rows = range(len(managers))
    acknowledge = [(m.acknowledge.median or 0) / 60 for m in managers]
    contact = [(m.first_contact.median or 0) / 60 for m in managers]
    axes.barh(
        [r - 0.2 for r in rows],
        acknowledge,
        height=0.4,
        color=_BAR,
        label="median time to acknowledge",
    )
    axes.barh(
        [r + 0.2 for r in rows],
        contact,
        height=0.4,
        color=_SECOND,
        label="median time to first contact",
    )
    axes.set_yticks(list(rows), [m.manager_name for m in managers])
    axes.invert_yaxis()
    axes.set_xlabel("minutes")
    figure.legend(
        *axes.get_legend_handles_labels(), loc="outside upper center", ncols=2, fontsize=8,
        frameon=False,
    )
    axes.spines[["top", "right"]].set_visible(False)
    return figure, acknowledge, contact
