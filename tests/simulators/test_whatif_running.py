"""What-if runs and their comparison on a world counted by hand (tests/simulators/whatif_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import isolated_settings
from monitor.errors import ConfigurationError
from simulators.whatif import (
    ManagerCounts,
    compare,
    current_rules,
    proposed_rules,
    read_traffic,
    render_json,
    render_text,
    run_policy,
    what_if,
)
from tests.simulators.whatif_fixtures import (
    C1_CARD_DAY1,
    C1_CARD_DAY2,
    C1_TECHNICAL,
    C2_FRAUD,
    write_proposed,
    write_world,
)


def _registry(folder: Path) -> tuple[Path, Path]:
    return folder / "customers.csv", folder / "managers.csv"


def test_one_run_counts_alerts_notifications_and_digests_per_manager(tmp_path: Path) -> None:
    """The current rules give M1 three alerts, three notifications and a digest per day; M2 one alert."""
    registry, recording = write_world(tmp_path)
    settings = isolated_settings(registry={"customers_path": registry / "customers.csv",
                                           "managers_path": registry / "managers.csv"})
    work = tmp_path / "work"
    work.mkdir()
    run = run_policy(read_traffic(recording), settings, current_rules(settings), work)
    assert run.events == 6 and run.rejected == 0 and run.vip_failures == 4
    assert run.managers == {
        "M1": ManagerCounts(alerts=3, notifications=3, digests=2),
        "M2": ManagerCounts(alerts=1, notifications=1),
    }
    assert [alert.alert_id for alert in run.alerts] == [C1_CARD_DAY1, C2_FRAUD, C1_TECHNICAL, C1_CARD_DAY2]
    assert {alert.delivery for alert in run.alerts} == {"own"}
    assert run.incidents == ()


def test_comparison_lists_disappearing_and_changed_alerts(tmp_path: Path) -> None:
    """Platinum without ``card`` and fraud at medium: M1 loses two alerts and a digest, C2's alert turns medium."""
    registry, recording = write_world(tmp_path)
    settings = isolated_settings()
    current = current_rules(settings)
    proposed = proposed_rules(write_proposed(tmp_path / "proposed"), current)
    assert proposed.alerting == tmp_path / "proposed" / "alerting.yaml"
    assert proposed.response_codes == current.response_codes  # the file it lacks falls back

    result = what_if(read_traffic(recording), settings, current, proposed, registry=_registry(registry))

    by_manager = {row.manager_id: row for row in result.managers}
    assert by_manager["M1"].current == ManagerCounts(alerts=3, notifications=3, digests=2)
    assert by_manager["M1"].proposed == ManagerCounts(alerts=1, notifications=1, digests=1)
    assert by_manager["M1"].difference() == {"alerts": -2, "notifications": -2, "incident_notices": 0,
                                             "summaries": 0, "digests": -1}
    assert by_manager["M2"].current == by_manager["M2"].proposed == ManagerCounts(alerts=1, notifications=1)
    assert result.totals().difference()["notifications"] == -2
    assert [alert.alert_id for alert in result.disappeared] == [C1_CARD_DAY1, C1_CARD_DAY2]
    assert {(a.customer_name, a.manager_id, a.severity) for a in result.disappeared} == {
        ("Ada Lovelace", "M1", "medium")}
    assert result.appeared == ()
    assert [(c.current.alert_id, c.current.severity, c.proposed.severity) for c in result.changed] == [
        (C2_FRAUD, "high", "medium")]

    text = render_text(result, recording=recording)
    assert "M1       3 → 1 (-2)" in text
    assert "Alerts that disappear (2):" in text and C1_CARD_DAY2 in text
    assert f"{C2_FRAUD}  Alan Turing (C2), manager M2, window 2026-03-02 10:00 UTC: severity high → medium" in text
    document = render_json(result)
    assert document["totals"]["difference"]["alerts"] == -2
    assert [a["alert_id"] for a in document["alerts"]["disappeared"]] == [C1_CARD_DAY1, C1_CARD_DAY2]


def test_the_same_rules_give_no_difference(tmp_path: Path) -> None:
    """Comparing a run with an identical one shows zero differences and empty lists."""
    registry, recording = write_world(tmp_path)
    settings = isolated_settings()
    events = read_traffic(recording)
    runs = []
    for label in ("current", "proposed"):
        work = tmp_path / label
        work.mkdir()
        runs.append(run_policy(events, settings, current_rules(settings), work, label=label,
                               registry=_registry(registry)))
    result = compare(*runs)
    assert all(not any(row.difference().values()) for row in result.managers)
    assert result.appeared == result.disappeared == ()
    assert result.changed == ()


def test_a_bad_proposed_rule_file_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """Invalid YAML in the proposed folder raises a ConfigurationError naming the file."""
    registry, recording = write_world(tmp_path)
    settings = isolated_settings()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "alerting.yaml").write_text("tiers: [unclosed\n", encoding="utf-8")
    current = current_rules(settings)
    with pytest.raises(ConfigurationError, match="alerting.yaml"):
        what_if(read_traffic(recording), settings, current, proposed_rules(tmp_path / "bad", current),
                registry=_registry(registry))
