"""What each role's pages show: a team lead's alerts and team, operations' incidents and terminals without client names.

Real parts: the aiohttp application on aiohttp's test server over a real SQLite or
PostgreSQL alert store and a real SMTP server (fixture ``roles`` in roles_site.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from monitor.health.device_status import DeviceStatusEvent
from monitor.health.state import HealthBook, HealthRules
from monitor.testing.fixtures import wait_until
from tests.workspace.conftest import _LINK, CLAIRE, JONAS
from tests.workspace.roles_site import (  # noqa: F401  (fixtures)
    INCIDENT,
    LENA,
    OMAR,
    OPS_EMAIL,
    OPS_ID,
    RolesSite,
    client_names_fixture,
    roles_fixture,
)

_NAV = re.compile(r"<nav .*?</nav>", re.DOTALL)


def _rows(page: str) -> list[str]:
    """The body rows of a page's first table."""
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr.*?</tr>", body, re.DOTALL)


async def test_a_team_lead_sees_both_managers_alerts_with_a_manager_column(roles: RolesSite) -> None:
    """Lena's list holds Claire's and Jonas's clients' alerts, naming each manager; Claire's holds hers only."""
    roles.alert(1, CLAIRE, "Ada Lovelace")
    roles.alert(2, JONAS, "Alan Turing")
    roles.alert(3, OMAR, "Grace Hopper")  # Omar is a manager too, not in Lena's team
    lena = await roles.signed_in(LENA.manager_id)
    page = await (await lena.get("/workspace/alerts")).text()
    assert len(_rows(page)) == 2
    assert "Ada Lovelace" in page and "Alan Turing" in page and "Grace Hopper" not in page
    assert '<th scope="col">Manager</th>' in page
    assert "Claire Martin" in page and "Jonas Weber" in page
    claire = await roles.signed_in(CLAIRE.manager_id)
    page = await (await claire.get("/workspace/alerts")).text()
    assert "Ada Lovelace" in page and "Alan Turing" not in page
    assert '<th scope="col">Manager</th>' not in page


async def test_the_list_filters_by_state_and_by_a_manager_of_the_team(roles: RolesSite) -> None:
    """``?state=`` keeps one lifecycle state; ``?manager=`` one manager of the session's team, never another's."""
    ada = roles.alert(1, CLAIRE, "Ada Lovelace")
    roles.alert(2, CLAIRE, "Grace Hopper")
    roles.alert(3, JONAS, "Alan Turing")
    roles.store.acknowledge(ada, by=CLAIRE.manager_id, via="api")
    lena = await roles.signed_in(LENA.manager_id)
    page = await (await lena.get("/workspace/alerts?state=acknowledged")).text()
    assert [("Ada Lovelace" in row) for row in _rows(page)] == [True]
    assert '<option value="acknowledged" selected>' in page
    page = await (await lena.get(f"/workspace/alerts?manager={JONAS.manager_id}")).text()
    assert len(_rows(page)) == 1 and "Alan Turing" in page
    claire = await roles.signed_in(CLAIRE.manager_id)
    page = await (await claire.get(f"/workspace/alerts?manager={JONAS.manager_id}")).text()
    assert "Alan Turing" not in page and "Ada Lovelace" in page


async def test_a_team_lead_acts_on_a_team_alert_and_the_history_names_the_lead(roles: RolesSite) -> None:
    """Lena acknowledges Claire's client's alert from the workspace: the history says Lena did, through the workspace."""
    ada = roles.alert(1, CLAIRE, "Ada Lovelace")
    lena = await roles.signed_in(LENA.manager_id)
    token = await roles.csrf(lena, f"/workspace/alerts/{ada}")
    response = await lena.post(f"/workspace/alerts/{ada}/acknowledge", allow_redirects=False,
                               data={"csrf_token": token, "note": "Claire is off today"})
    assert response.status == 303
    [entry] = [h for h in roles.store.history(ada) if h.action == "acknowledged"]
    assert (entry.actor, entry.via, entry.note) == (LENA.manager_id, "workspace", "Claire is off today")


async def test_the_team_page_counts_waiting_alerts_and_the_median_time_to_acknowledge(roles: RolesSite) -> None:
    """Per manager: unacknowledged alerts, the oldest one's age, and the median time to acknowledge over 7 days."""
    roles.alert(1, CLAIRE, "Ada Lovelace", minutes_ago=90)
    roles.alert(2, CLAIRE, "Grace Hopper", minutes_ago=30)
    for number, (ago, took) in enumerate([(60, 10), (120, 30), (180, 4), (8 * 24 * 60 + 30, 5)], start=3):
        alert_id = roles.alert(number, JONAS, f"Client {number}", minutes_ago=ago)
        alert = roles.store.get_alert(alert_id)
        assert alert is not None
        roles.store.acknowledge(alert_id, by=JONAS.manager_id, via="email",
                                at=alert.created_at + timedelta(minutes=took))
    lena = await roles.signed_in(LENA.manager_id)
    page = await (await lena.get("/workspace/team")).text()
    rows = _rows(page)
    assert [("Lena Hoffmann" in r, "Claire Martin" in r, "Jonas Weber" in r) for r in rows] == [
        (True, False, False), (False, True, False), (False, False, True)]  # the lead first, then by name
    assert "(you)" in rows[0]
    cells = [re.findall(r"<td>(.*?)</td>", r, re.DOTALL) for r in rows]
    assert cells[0] == ["0", "—", "—", "0"]
    assert cells[1][0] == "2" and re.fullmatch(r"1 h 3[01] min", cells[1][1]) and cells[1][2:] == ["—", "0"]
    assert cells[2] == ["0", "—", "10 min", "3"]  # median of 4, 10 and 30 minutes; the 8-day-old one left out
    assert f'href="/workspace/alerts?manager={CLAIRE.manager_id}"' in page
    omar = await roles.signed_in(OMAR.manager_id)
    page = await (await omar.get("/workspace/team")).text()
    assert "Jonas Weber" in page and "Claire Martin" not in page


async def test_each_role_has_a_nav_of_its_own_pages(roles: RolesSite) -> None:
    """The nav shows a manager the alerts, a lead also the team, operations the incidents and terminals only."""
    expected = {CLAIRE.manager_id: ["/workspace/alerts"],
                LENA.manager_id: ["/workspace/alerts", "/workspace/team"],
                OPS_ID: ["/workspace/incidents", "/workspace/terminals"]}
    for person, links in expected.items():
        client = await roles.signed_in(person)
        page = await (await client.get("/workspace/alerts" if person != OPS_ID else "/workspace/incidents")).text()
        nav = _NAV.search(page)
        assert nav is not None
        assert re.findall(r'href="([^"]+)"', nav.group(0)) == links


async def test_operations_sign_in_by_mail_and_land_on_the_incidents(roles: RolesSite) -> None:
    """Operations ask with their address (any case), get the link at it, and sign in to the incidents page."""
    client = await roles.client()
    await client.post("/workspace/sign-in", data={"who": OPS_EMAIL.upper()})
    await wait_until(lambda: bool(roles.sink.deliveries()), timeout=30, what="the sign-in mail")
    [(to, _, text)] = roles.sink.deliveries()
    assert to == OPS_EMAIL and "Hello Priya Nair" in text
    found = _LINK.search(text)
    assert found is not None
    response = await client.post(found.group(1), allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/workspace/incidents")


async def test_operations_pages_name_no_client(roles: RolesSite) -> None:
    """Incidents, an incident and terminals show what failed and the managers, never a client's name or ID."""
    roles.alert(1, CLAIRE, "Ada Lovelace", incident=True)
    roles.alert(2, JONAS, "Alan Turing", terminal="POS00777")
    ops = await roles.signed_in(OPS_ID)
    pages = {path: await (await ops.get(path)).text()
             for path in ("/workspace/incidents", f"/workspace/incidents/{INCIDENT}", "/workspace/terminals")}
    for path, page in pages.items():
        for secret in ("Ada Lovelace", "Alan Turing", "C-0001", "C-0002", "4111111111111111"):
            assert secret not in page, (path, secret)
    assert "terminal ATM00042" in pages["/workspace/incidents"]
    assert "Claire Martin" in pages[f"/workspace/incidents/{INCIDENT}"]
    terminals = _rows(pages["/workspace/terminals"])
    assert len(terminals) == 2
    assert "ATM00042" in terminals[0] + terminals[1] and "POS00777" in terminals[0] + terminals[1]
    assert f'href="/workspace/incidents/{INCIDENT}"' in pages["/workspace/terminals"]


@pytest.mark.parametrize("operations_see_client_names", [True])
async def test_operations_see_client_names_only_when_configured(roles: RolesSite) -> None:
    """With ``operations_see_client_names``, the incident page names the clients it hit; still no alert page."""
    ada = roles.alert(1, CLAIRE, "Ada Lovelace", incident=True)
    ops = await roles.signed_in(OPS_ID)
    page = await (await ops.get(f"/workspace/incidents/{INCIDENT}")).text()
    assert "Ada Lovelace" in page
    assert (await ops.get(f"/workspace/alerts/{ada}")).status == 404


async def test_the_terminals_page_shows_the_live_health_state_where_the_book_runs(roles: RolesSite) -> None:
    """With the monitor's health book, each listed terminal shows its state and reasons now; unknown ones say so."""
    roles.alert(1, CLAIRE, "Ada Lovelace")
    roles.alert(2, JONAS, "Alan Turing", terminal="POS00777")
    book = HealthBook(HealthRules())
    now = datetime.now(UTC)
    book.apply_status([DeviceStatusEvent(event_id="s1", occurred_at=now, terminal_id="ATM00042",
                                         component="network", state="offline")])
    book.evaluate(now)
    ops = await roles.signed_in(OPS_ID)
    page = await (await ops.get("/workspace/terminals")).text()
    assert "Health now" not in page  # no book in this process: the store's figures only
    roles.workspace.terminal_health = book.state_of
    rows = {("ATM00042" in row): row for row in _rows(await (await ops.get("/workspace/terminals")).text())}
    assert "offline: network offline" in rows[True]
    assert "unknown" in rows[False]
