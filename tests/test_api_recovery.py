"""The alert API carries each alert's recovery watch (null without one)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from monitor.alerts.store import AlertStore, RecoveryMatch
from monitor.api import build_api, start_api
from monitor.domain import Manager, VipFailure
from tests.pipeline.recovery_helpers import withdrawal_failure

TOKEN = "api-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2024, 5, 6, 12, 1, 30, tzinfo=UTC)
CLAIRE = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example")


def _failure(number: int) -> VipFailure:
    """A failed ATM withdrawal of client ``C-{number:04d}`` at T0."""
    return withdrawal_failure(f"ev-{number}", T0, customer_id=f"C-{number:04d}", manager=CLAIRE)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, AlertStore]]:
    """The API on 127.0.0.1 over a fresh SQLite store."""
    with AlertStore(tmp_path / "alerts.db") as store:
        server = await start_api(build_api(store, api_token=TOKEN))
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                yield client, store
        finally:
            await server.close()


async def test_alerts_carry_their_recovery_in_the_list_and_one_by_one(
    served: tuple[httpx.AsyncClient, AlertStore],
) -> None:
    """Recovered: when, where, how fast; watching: the window's end; no watch: null."""
    client, store = served
    [recovered, watched] = store.record(
        [_failure(1), _failure(2)], recovery_window_seconds=1800
    ).new_alert_ids
    [unwatched] = store.record([_failure(3)]).new_alert_ids
    store.mark_recovered(
        [
            RecoveryMatch(
                alert_id=recovered,
                recovered_at=T0 + timedelta(minutes=3),
                event_id="ok-1",
                terminal_id="ATM00077",
                merchant_id="BNK2",
                channel="ATM",
                txn_type="withdrawal",
            )
        ],
        now=T0 + timedelta(minutes=4),
    )
    one = (await client.get(f"/alerts/{recovered}", headers=AUTH)).json()["recovery"]
    assert one == {
        "status": "recovered",
        "window_ends_at": "2024-05-06T12:31:30+00:00",
        "recovered_at": "2024-05-06T12:04:30+00:00",
        "seconds_to_recovery": 180.0,
        "terminal_id": "ATM00077",
        "merchant_id": "BNK2",
        "channel": "ATM",
        "txn_type": "withdrawal",
        "same_terminal": False,
    }
    listed = {
        a["alert_id"]: a["recovery"]
        for a in (await client.get("/alerts", headers=AUTH)).json()["alerts"]
    }
    assert listed[recovered] == one
    assert listed[watched] is not None and listed[watched]["status"] == "watching"
    assert listed[watched]["recovered_at"] is None and listed[watched]["same_terminal"] is None
    assert listed[unwatched] is None
