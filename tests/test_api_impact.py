"""The API's repair priority: GET /terminals/impact over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from monitor.alerts.store import AlertStore
from monitor.api import build_api, start_api
from tests.alerts.conftest import _make_failure

API_TOKEN = "api-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, AlertStore]]:
    """The API over a store holding failures at two ATMs an hour and three days ago, and a decline."""
    now = datetime.now(UTC)
    failures = [_make_failure(f"ev-{n}", now - age, customer_id=customer, customer_name=f"Client {customer}",
                              terminal_id=terminal, outcome=outcome,
                              response_code=None if outcome == "technical" else "51")
                for n, (terminal, customer, age, outcome) in enumerate([
                    ("ATM-1", "C-1", timedelta(hours=1), "technical"),
                    ("ATM-2", "C-2", timedelta(days=3), "technical"),
                    ("ATM-2", "C-3", timedelta(days=3), "technical"),
                    ("ATM-3", "C-4", timedelta(hours=1), "customer")])]
    with AlertStore(tmp_path / "alerts.db") as store:
        store.record(failures, now=now)
        server = await start_api(build_api(store, api_token=API_TOKEN, impact_classes=("technical",)))
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                yield client, store
        finally:
            await server.close()


async def test_each_window_ranks_its_terminals(served: tuple[httpx.AsyncClient, AlertStore]) -> None:
    """24h holds the ATM of an hour ago; 7d puts the ATM with two clients first; a decline never counts."""
    client, _ = served
    day = (await client.get("/terminals/impact", headers=AUTH)).json()
    assert (day["window"], day["classes"]) == ("24h", ["technical"])
    assert [(t["rank"], t["terminal_id"], t["clients"]) for t in day["terminals"]] == [(1, "ATM-1", 1)]
    week = (await client.get("/terminals/impact", params={"window": "7d", "limit": 5}, headers=AUTH)).json()
    assert [(t["terminal_id"], t["clients"], t["failures"]) for t in week["terminals"]] == [
        ("ATM-2", 2, 2), ("ATM-1", 1, 1)]
    assert week["terminals"][0]["outcomes"] == {"technical": 2}


@pytest.mark.parametrize("params", [{"window": "1y"}, {"limit": "0"}, {"limit": "x"}])
async def test_bad_parameters_answer_400_and_no_token_401(
        served: tuple[httpx.AsyncClient, AlertStore], params: dict[str, str]) -> None:
    """An unknown window or a bad limit is a 400; without the bearer token the answer is 401."""
    client, _ = served
    assert (await client.get("/terminals/impact", params=params, headers=AUTH)).status_code == 400
    assert (await client.get("/terminals/impact")).status_code == 401
