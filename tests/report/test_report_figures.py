"""The fast-correction report's numbers match a store of known contents (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.alerts.store import AlertStore
from monitor.report import ReportData, figures, gather, render_html
from monitor.report.data import nearest_rank
from tests.report import known


def _gather(location: Path | str, **options: Any) -> ReportData:
    with AlertStore(location) as store:
        return gather(
            store,
            since=known.SINCE,
            until=known.UNTIL,
            zone="UTC",
            terminal_classes=known.OWN_CLASSES,
            now=known.NOW,
            **options,
        )


def embedded(html: str) -> dict[str, Any]:
    """The report's machine-readable block (``<script ... id="report-figures">``)."""
    found = re.search(
        r'<script type="application/json" id="report-figures">(.*?)</script>', html, re.DOTALL
    )
    assert found is not None
    return json.loads(found.group(1))  # type: ignore[no-any-return]


def test_every_figure_of_the_bank_report_matches_the_known_store(
    store_location: Path | str,
) -> None:
    """Failures by day and cause, times, outcomes, recovery, terminals, managers: as by hand."""
    known.build(store_location)
    data = _gather(store_location)
    numbers = figures(data)
    for key, expected in known.EXPECTED.items():
        assert numbers[key] == expected, key
    assert numbers["period"] == {
        "since": "2026-12-01T00:00:00+00:00",
        "until": "2026-12-04T00:00:00+00:00",
        "zone": "UTC",
        "generated_at": "2026-12-07T21:00:00+00:00",
        "team": None,
    }
    assert embedded(render_html(data)) == numbers


def test_the_page_shows_the_same_numbers_as_its_json_block(tmp_path: Path) -> None:
    """The header's counts, failures per cause and managers' rows in the HTML are the store's."""
    known.build(tmp_path / "alerts.db")
    html = render_html(_gather(tmp_path / "alerts.db"))
    shown = dict(re.findall(r'data-figure="([\w-]+)">(\d+)<', html))
    assert shown == {
        "failures": "9",
        "alerts": "6",
        "acknowledged": "5",
        "contacted": "2",
        "recovered": "2",
        "abandoned": "2",
        "class-card": "3",
        "class-technical": "3",
        "class-customer": "1",
        "class-fraud": "1",
        "class-terminal": "1",
    }
    assert re.findall(r'data-terminal="([\w-]+)"', html) == ["ATM-2", "ATM-1"]
    assert re.findall(r'data-manager="([\w-]+)"', html) == ["RM-017", "RM-042", "RM-002"]
    claire = re.search(r'<tr data-manager="RM-017">(.*?)</tr>', html, re.DOTALL)
    assert claire is not None
    cells = re.findall(r'<td class="n">([^<]*)</td>', claire.group(1))
    # failures, alerts, acknowledged, median to acknowledge (990 s), to reach (600 s),
    # resolved, recovered, abandoned
    assert cells == ["3", "2", "2", "16 min", "10 min", "2", "1", "1"]
    assert "Made by cardmon on 07 Dec 2026 21:00 (UTC)" in html


def test_a_team_report_counts_the_lead_and_their_team_only(tmp_path: Path) -> None:
    """With a team, Li's alerts are left out of every count and each team manager gets a table."""
    known.build(tmp_path / "alerts.db")
    data = _gather(
        tmp_path / "alerts.db", team="RM-017", manager_ids=("RM-017", *known.TEAMS["RM-017"])
    )
    numbers = figures(data)
    assert (numbers["failures"], numbers["alerts"]) == (7, 4)
    assert numbers["failures_by_day"]["2026-12-03"] == {}
    # acknowledged after 3, 30, 1 and 7 minutes; contacts after 10 min and 2 h.
    assert numbers["time_to_acknowledge"] == {
        "count": 4,
        "median_seconds": 300.0,
        "p90_seconds": 1800.0,
    }
    assert numbers["time_to_first_contact"] == {
        "count": 2,
        "median_seconds": 3900.0,
        "p90_seconds": 7200.0,
    }
    assert numbers["recovery"] == {"recovered": 1, "abandoned": 1, "pending": 1, "not_watched": 1}
    assert [m["manager_id"] for m in numbers["managers"]] == ["RM-017", "RM-042"]
    assert numbers["managers"] == known.EXPECTED["managers"][:2]
    # Top terminals stay bank-wide (an operations ranking), and the page says so.
    assert numbers["terminals"] == known.EXPECTED["terminals"]
    html = render_html(data)
    assert "Team of Claire Martin (RM-017)" in html and "(not only this team)" in html
    assert html.count("<h3>") == 2


def test_no_client_name_nor_card_reaches_the_report(tmp_path: Path) -> None:
    """The report counts per manager: no client name, client ID or card (even masked) in it."""
    known.build(tmp_path / "alerts.db")
    for options in ({}, {"team": "RM-017", "manager_ids": ("RM-017", "RM-042")}):
        html = render_html(_gather(tmp_path / "alerts.db", **options))
        for name in known.CLIENT_NAMES:
            assert name not in html
        assert "497010" not in html and "C-1" not in html


def test_days_are_counted_in_the_reports_time_zone(tmp_path: Path) -> None:
    """Li's fraud failure at 20:00 UTC on 3 December falls on 4 December in Shanghai (UTC+8)."""
    known.build(tmp_path / "alerts.db")
    with AlertStore(tmp_path / "alerts.db") as store:
        data = gather(
            store,
            since=known.SINCE,
            until=known.UNTIL,
            zone="Asia/Shanghai",
            terminal_classes=known.OWN_CLASSES,
            now=known.NOW,
        )
    by_day = figures(data)["failures_by_day"]
    assert list(by_day) == ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"]
    assert by_day["2026-12-04"] == {"fraud": 1}
    assert data.generated_at.utcoffset() is not None and data.generated_at.hour == 5


def test_an_empty_period_gives_a_report_of_zeros(tmp_path: Path) -> None:
    """A period with nothing in it renders, every count zero and every time absent."""
    known.build(tmp_path / "alerts.db")
    with AlertStore(tmp_path / "alerts.db") as store:
        data = gather(
            store,
            since=datetime(2025, 1, 1, tzinfo=UTC),
            until=datetime(2025, 1, 2, tzinfo=UTC),
            zone="UTC",
            terminal_classes=known.OWN_CLASSES,
        )
        with pytest.raises(ValueError, match="ends before"):
            gather(
                store,
                since=known.UNTIL,
                until=known.SINCE,
                zone="UTC",
                terminal_classes=known.OWN_CLASSES,
            )
    numbers = embedded(render_html(data))
    assert (numbers["failures"], numbers["alerts"], numbers["terminals"], numbers["managers"]) == (
        0,
        0,
        [],
        [],
    )
    assert numbers["time_to_acknowledge"] == {
        "count": 0,
        "median_seconds": None,
        "p90_seconds": None,
    }


def test_the_p90_is_the_nearest_rank() -> None:
    """The 90th percentile is the smallest value with 90 % of the values at or below it."""
    assert nearest_rank([5.0], 90) == 5.0
    assert nearest_rank(list(map(float, range(1, 11))), 90) == 9.0
    assert nearest_rank(list(map(float, range(1, 12))), 90) == 10.0
