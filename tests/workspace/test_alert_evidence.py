"""The workspace's alert page shows the evidence around an alert: the terminal's other failures, the incident, the deliveries."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from monitor.incidents import IncidentChange, IncidentRules
from tests.alerts.conftest import _make_failure
from tests.workspace.conftest import CLAIRE, JONAS, RAW_PAN, T0, Site

RULES = IncidentRules.model_validate({"group_wait_seconds": 15, "group_interval_seconds": 300,
                                      "scopes": {"terminal": {"min_failures": 5}}})


async def test_the_alert_page_counts_every_clients_failures_at_its_terminal_around_it(site: Site) -> None:
    """Other clients' failures at the same terminal within 30 minutes count (another manager's too, unnamed); later ones do not."""
    alert_id = site.record(1, name="Ada Lovelace")
    site.record(2, JONAS, name="Grace Hopper", minutes=10)  # another manager's client, same ATM
    site.record(3, name="Alan Turing", minutes=45)  # outside the window and 30 minutes after it
    client = await site.signed_in(CLAIRE.manager_id)
    page = await client.get(f"/workspace/alerts/{alert_id}")
    html = await page.text()
    assert page.status == 200
    terminal = html.split("At the terminal")[1].split("Incident")[0]
    assert "<td>ATM00042</td>\n<td>2</td>\n<td>2 <strong>" in terminal
    assert "91 ×2" in terminal
    assert "Grace Hopper" not in html and "C-0002" not in html  # counted, never named
    assert "Not part of an incident" in html
    assert "€134.09" in html
    assert 'href="/workspace/clients/C-0001"' in html
    assert RAW_PAN not in html


async def test_the_alert_page_names_its_incident(site: Site) -> None:
    """An alert linked to an incident says which incident, since when and whether it is still open."""
    change = IncidentChange(kind="opened", incident_id="in-atm42", scope="terminal", scope_key="ATM00042",
                            started_at=T0, last_failure_at=T0, failures=7, cards=6, terminals=1)
    linked = replace(_make_failure("ev-inc", T0 + timedelta(seconds=5), customer_id="C-0009",
                                   customer_name="Client 9", manager=CLAIRE, terminal_id="ATM00042",
                                   response_code="91", outcome="technical"),
                     incident_id="in-atm42")
    [linked_id] = site.store.record([linked], incidents=[change], incident_rules=RULES, now=T0,
                                    managers={CLAIRE.manager_id: CLAIRE}).new_alert_ids
    client = await site.signed_in(CLAIRE.manager_id)
    html = await (await client.get(f"/workspace/alerts/{linked_id}")).text()
    assert "Part of an incident: terminal ATM00042, since 2026-12-07 09:00 UTC, still open; " \
           "7 failed transactions, 1 alerts of 1 managers." in html


async def test_the_alert_page_lists_each_delivery_with_its_channel_recipient_and_status(site: Site) -> None:
    """Each queued message shows its channel, who it goes to, its status and attempts; a jsonl sink shows as a record."""
    failure = _make_failure("ev-d", T0, customer_id="C-0007", customer_name="Client 7", manager=CLAIRE)
    [alert_id] = site.store.record([failure], now=T0, channels=["email"], sinks=["jsonl"]).new_alert_ids
    [email, _] = sorted(site.store.get_alert(alert_id).deliveries, key=lambda d: d.channel)
    assert site.store.mark_sent(email.delivery_id, T0 + timedelta(seconds=2))
    client = await site.signed_in(CLAIRE.manager_id)
    html = await (await client.get(f"/workspace/alerts/{alert_id}")).text()
    rows = html.split("<h2>Deliveries</h2>")[1].split("</table>")[0]
    assert f"<td>email</td>\n<td>{CLAIRE.manager_id}</td>\n<td>sent</td>" in rows
    assert "2026-12-07 09:00:02" in rows
    assert "jsonl (a record, reaches nobody)</td>\n<td>–</td>" in rows
