"""What-if with storm control: a seeded synthetic fleet's outages, with and without the incidents section."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from monitor.config import isolated_settings
from monitor.paths import rules_path
from simulators.fleet import build_fleet, write_registry
from simulators.sources.replay import write_recording
from simulators.sources.synthetic import default_faults, synthetic_events
from simulators.whatif import current_rules, proposed_rules, read_traffic, what_if


def test_dropping_storm_control_unfolds_the_incident_notices(tmp_path: Path) -> None:
    """Without incidents every alert goes out on its own: the folded alerts come back as notifications, the notices go."""
    fleet = build_fleet(terminals=40, customers=1_000, vips=20, seed=11)
    customers, managers = write_registry(fleet, tmp_path / "registry")
    recording = tmp_path / "recording.jsonl"
    write_recording(synthetic_events(fleet, start=datetime(2026, 3, 2, 9, 0, tzinfo=UTC), rate=150,
                                     duration_s=300, faults=default_faults(fleet, 300), vip_share=0.06,
                                     seed=11), recording)
    text = rules_path("alerting.yaml").read_text(encoding="utf-8")
    (tmp_path / "proposed").mkdir()
    (tmp_path / "proposed" / "alerting.yaml").write_text(
        text[:text.index("\nincidents:")] + "\n" + text[text.index("# Per-manager rate cap"):], encoding="utf-8")
    settings = isolated_settings(registry={"customers_path": customers, "managers_path": managers})
    current = current_rules(settings)

    result = what_if(read_traffic(recording), settings, current, proposed_rules(tmp_path / "proposed", current))

    assert result.current.incidents, "the demo faults open at least one incident"
    assert {(i.scope, i.scope_key) for i in result.incidents_disappeared} == {
        (i.scope, i.scope_key) for i in result.current.incidents}
    assert result.proposed.incidents == () and result.appeared == result.disappeared == ()
    folded = [a for a in result.current.alerts if a.delivery == "incident"]
    assert folded, "storm control folds some alerts into incident notices"
    assert [(c.current.delivery, c.proposed.delivery) for c in result.changed] == [("incident", "own")] * len(folded)
    for row in result.managers:
        mine = [a for a in result.current.alerts if a.manager_id == row.manager_id]
        assert row.current.notifications == sum(a.delivery == "own" for a in mine)
        assert row.proposed.notifications == row.proposed.alerts == row.current.alerts
        assert row.proposed.incident_notices == 0
    totals = result.totals()
    assert totals.difference()["notifications"] == len(folded)
    assert totals.current.incident_notices > 0
