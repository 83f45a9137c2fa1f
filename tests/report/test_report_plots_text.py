"""The report's plots draw names as written (no math text) and keep the legend off the bars."""

from __future__ import annotations

import base64
import re

import pytest

from monitor.report import plots
from monitor.report.data import Distribution, ManagerSummary

ODD_NAMES = (r"Jo $\undefinedcmd$ Smith", "Ann $5 and $10 bonus")


def _manager(manager_id: str, name: str, minutes: float) -> ManagerSummary:
    return ManagerSummary(
        manager_id=manager_id,
        manager_name=name,
        failures=1,
        alerts=1,
        acknowledge=Distribution((minutes * 60,)),
        first_contact=Distribution((minutes * 120,)),
        resolved=1,
        outcomes={},
        recovery={},
    )


def _glyphs(plot: plots.Plot) -> set[str]:
    svg = base64.b64decode(plot.uri.split(",", 1)[1]).decode()
    return set(re.findall(r'id="(DejaVu[^"]*)"', svg))


@pytest.mark.parametrize("name", ODD_NAMES)
def test_a_dollar_in_a_managers_name_is_drawn_as_written(name: str) -> None:
    """A name with ``$`` neither crashes the plot nor turns into math (no italic math glyphs)."""
    managers = [_manager("RM-1", name, 3.0), _manager("RM-2", "Plain Name", 5.0)]
    plot = plots.manager_times(managers)
    glyphs = _glyphs(plot)
    assert not any("Oblique" in glyph or "Italic" in glyph for glyph in glyphs), glyphs
    assert name in plot.alt


def test_the_per_manager_legend_does_not_cover_the_bars() -> None:
    """The legend of the per-manager plot sits outside the axes, so it hides no bar."""
    managers = [_manager(f"RM-{n}", f"Manager {n}", 10.0 + n) for n in range(3)]
    figure, _, _ = plots._manager_times_figure(managers)
    figure.draw_without_rendering()
    (axes,) = figure.axes
    (legend,) = figure.legends + [a.get_legend() for a in figure.axes if a.get_legend()]
    assert not legend.get_window_extent().overlaps(axes.get_window_extent())
