"""The VIP registry masks card numbers typed into names, so none reaches the store or a report."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from monitor.alerts.store import AlertStore
from monitor.pipeline.vips import read_registry
from monitor.report import gather, render_html
from tests.helpers import write_registry
from tests.report import known

MANAGERS_CSV = """
manager_id,name,email,timezone
M1,Jo 4111 1111 1111 1111 Smith,jo@bank.example,Europe/Paris
M2,Room 1234567 Team,bo@bank.example,UTC
"""

CUSTOMERS_CSV = """
customer_id,name,tier,manager_id
C-001,Ada 4111-1111-1111-1111,private,M1
C-002,Blaise Pascal,gold,M2
C-003,Carl ４１１１１１１１１１１１１１１１,gold,M2
"""

MASK = "411111******1111"


def test_names_are_scrubbed_as_the_registry_is_read(tmp_path: Path) -> None:
    """Managers' and clients' names have their PAN forms masked; other names stay as given."""
    registry = read_registry(*write_registry(tmp_path, CUSTOMERS_CSV, MANAGERS_CSV))
    jo, room = registry.manager("M1"), registry.manager("M2")
    assert jo is not None and room is not None
    assert jo.name == f"Jo {MASK} Smith" and room.name == "Room 1234567 Team"
    names = dict(registry.customers.select("customer_id", "customer_name").rows())
    assert names == {"C-001": f"Ada {MASK}", "C-002": "Blaise Pascal", "C-003": f"Carl {MASK}"}


def test_a_pan_in_a_managers_name_reaches_neither_the_store_nor_the_report(
    tmp_path: Path,
) -> None:
    """A manager registered with a PAN in their name: the alert and the report carry the mask."""
    registry = read_registry(*write_registry(tmp_path, CUSTOMERS_CSV, MANAGERS_CSV))
    manager = registry.manager("M1")
    assert manager is not None
    at = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    with AlertStore(tmp_path / "alerts.db") as store:
        store.record([known._failure("ev-1", at, 1, manager, "technical", "ATM-1")], now=at)
        [alert] = store.report_alerts(since=known.SINCE, until=known.UNTIL)
        assert alert.manager_name == f"Jo {MASK} Smith"
        data = gather(
            store,
            since=known.SINCE,
            until=known.UNTIL,
            zone="UTC",
            terminal_classes=known.OWN_CLASSES,
            now=known.NOW,
        )
    html = render_html(data)
    assert f"Jo {MASK} Smith" in html
    assert "4111 1111 1111 1111" not in html and "4111111111111111" not in html
