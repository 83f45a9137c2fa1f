"""A manager's name is PAN-scrubbed when an alert is recorded, whatever registry it came from."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from monitor.alerts.store import AlertStore
from monitor.domain import Manager
from monitor.report import gather, render_html
from tests.report import known


def test_the_store_masks_a_pan_in_a_managers_name(store_location: Path | str) -> None:
    """Recording an alert for a manager whose name holds a PAN stores and reports the mask."""
    manager = Manager(manager_id="RM-9", name="Jo 4111 1111 1111 1111 Smith", email="jo@b.example")
    at = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    with AlertStore(store_location) as store:
        store.record([known._failure("ev-1", at, 1, manager, "technical", "ATM-1")], now=at)
        [alert] = store.report_alerts(since=known.SINCE, until=known.UNTIL)
        data = gather(
            store,
            since=known.SINCE,
            until=known.UNTIL,
            zone="UTC",
            terminal_classes=known.OWN_CLASSES,
            now=known.NOW,
        )
    assert alert.manager_name == "Jo 411111******1111 Smith"
    html = render_html(data)
    assert "4111 1111 1111 1111" not in html and "Jo 411111******1111 Smith" in html
