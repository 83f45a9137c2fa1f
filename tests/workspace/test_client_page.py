"""The workspace's client page: one client's failures and alerts over the last 90 days, and nobody else's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.alerts.conftest import _make_failure
from tests.workspace.conftest import CLAIRE, JONAS, RAW_PAN, Site


def _record(site: Site, event_id: str, days_ago: float, **fields: object) -> str:
    now = datetime.now(UTC)
    failure = _make_failure(event_id, now - timedelta(days=days_ago), manager=CLAIRE,
                            pan_masked=RAW_PAN, **fields)
    [alert_id] = site.store.record([failure], now=now).new_alert_ids
    return alert_id


async def test_the_client_page_shows_the_last_90_days_of_alerts_and_failures(site: Site) -> None:
    """Alerts of the last 90 days, newest first, with every failed transaction, the outcome classes and the money per currency."""
    recent = _record(site, "ev-1", 2, amount_minor=13409, currency="EUR")
    older = _record(site, "ev-2", 40, amount_minor=5000, currency="JPY", response_code="91",
                    outcome="technical")
    too_old = _record(site, "ev-3", 95)
    client = await site.signed_in(CLAIRE.manager_id)
    page = await client.get("/workspace/clients/C-1001")
    html = await page.text()
    assert page.status == 200
    assert "<h1>Ada Lovelace</h1>" in html and "last 90 days" in html
    assert html.index(recent) < html.index(older) and too_old not in html
    assert "customer ×1, technical ×1" in html
    assert "€134.09" in html and "¥5,000" in html
    assert RAW_PAN not in html and "411111******1111" in html


async def test_another_managers_client_and_an_unknown_client_answer_404(site: Site) -> None:
    """Jonas cannot open Claire's client; nobody can open a client without alerts in the period."""
    _record(site, "ev-1", 1)
    _record(site, "ev-old", 120, customer_id="C-OLD", customer_name="Old Client")
    jonas = await site.signed_in(JONAS.manager_id)
    assert (await jonas.get("/workspace/clients/C-1001")).status == 404
    claire = await site.signed_in(CLAIRE.manager_id)
    assert (await claire.get("/workspace/clients/C-nobody")).status == 404
    assert (await claire.get("/workspace/clients/C-OLD")).status == 404
    anonymous = await site.client()
    response = await anonymous.get("/workspace/clients/C-1001", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/workspace/sign-in")
