"""The report reads a team of any size: more than 500 managers are read in several queries."""

from __future__ import annotations

from pathlib import Path

from monitor.alerts.store import AlertStore
from tests.report import known


def test_a_team_of_more_than_500_managers_reads_every_alert(store_location: Path | str) -> None:
    """1,503 manager IDs, read 500 at a time, give the same failures and alerts as no filter."""
    known.build(store_location)
    # Sorted, RM-002, RM-017 and RM-042 fall in the second, third and fourth chunk of 500.
    fillers = [f"RM-{prefix}-{n:04d}" for prefix in ("000", "003", "020") for n in range(500)]
    team = sorted([*fillers, "RM-002", "RM-017", "RM-042"])
    assert [team.index(m) // 500 for m in ("RM-002", "RM-017", "RM-042")] == [1, 2, 3]
    with AlertStore(store_location) as store:
        period = {"since": known.SINCE, "until": known.UNTIL}
        all_failures = store.report_failures(**period)
        all_alerts = store.report_alerts(**period)
        assert {f.manager_id for f in all_failures} == {"RM-002", "RM-017", "RM-042"}
        assert store.report_failures(**period, manager_ids=team) == all_failures
        assert store.report_alerts(**period, manager_ids=team) == all_alerts
        some = store.report_alerts(**period, manager_ids=[*fillers, "RM-042"])
        assert {a.manager_id for a in some} == {"RM-042"}
