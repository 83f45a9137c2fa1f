"""Every page and action of the workspace, for every role: what the rules let a role see answers, anything else 404.

Real parts: the aiohttp application on aiohttp's test server over a real SQLite or
PostgreSQL alert store (fixture ``roles`` in roles_site.py). The setting: Claire's client
Ada Lovelace has an alert in an open terminal incident; Jonas's client Alan Turing has one.

==========  ===============================================================================
role        may see
==========  ===============================================================================
claire      her clients' alerts (list, page, acknowledge, resolve, client page)
jonas       his own only: Claire's alert and client answer 404
lena        leads Claire and Jonas: both managers' alerts and clients, and the team page
omar        leads Jonas only: Claire's alert and client answer 404; his team page
operations  incidents, one incident, terminals; no alert list, alert, client or team page
anonymous   nothing: every route sends to the sign-in form
==========  ===============================================================================
"""

from __future__ import annotations

from typing import Final

import pytest

from tests.workspace.conftest import CLAIRE, JONAS
from tests.workspace.roles_site import (  # noqa: F401  (fixtures)
    INCIDENT,
    LENA,
    OMAR,
    OPS_ID,
    RolesSite,
    client_names_fixture,
    roles_fixture,
)

ROLE_IDS: Final = {"claire": CLAIRE.manager_id, "jonas": JONAS.manager_id, "lena": LENA.manager_id,
                   "omar": OMAR.manager_id, "operations": OPS_ID}
_MANAGERS: Final = frozenset({"claire", "jonas", "lena", "omar"})
# <route name: (method, path with {ada}/{alan} for the alert IDs, roles it answers)>
ROUTES: Final[dict[str, tuple[str, str, frozenset[str]]]] = {
    "alert list": ("GET", "/workspace/alerts", _MANAGERS),
    "Claire's alert": ("GET", "/workspace/alerts/{ada}", frozenset({"claire", "lena"})),
    "Jonas's alert": ("GET", "/workspace/alerts/{alan}", frozenset({"jonas", "lena", "omar"})),
    "acknowledge": ("POST", "/workspace/alerts/{ada}/acknowledge", frozenset({"claire", "lena"})),
    "resolve": ("POST", "/workspace/alerts/{ada}/resolve", frozenset({"claire", "lena"})),
    "Claire's client": ("GET", "/workspace/clients/C-0001", frozenset({"claire", "lena"})),
    "team": ("GET", "/workspace/team", frozenset({"lena", "omar"})),
    "incidents": ("GET", "/workspace/incidents", frozenset({"operations"})),
    "incident": ("GET", f"/workspace/incidents/{INCIDENT}", frozenset({"operations"})),
    "terminals": ("GET", "/workspace/terminals", frozenset({"operations"})),
}


@pytest.mark.parametrize("role", [*ROLE_IDS, "anonymous"])
@pytest.mark.parametrize("route", list(ROUTES))
async def test_each_role_gets_exactly_its_pages_and_actions(roles: RolesSite, route: str, role: str) -> None:
    """A role the rules allow gets the page (200) or the action done (303); any other signed-in role 404 and nothing changes."""
    method, template, allowed = ROUTES[route]
    ada = roles.alert(1, CLAIRE, "Ada Lovelace", incident=True)
    alan = roles.alert(2, JONAS, "Alan Turing")
    if route == "resolve":
        roles.store.acknowledge(ada, by=CLAIRE.manager_id, via="api")
    path = template.format(ada=ada, alan=alan)
    if role == "anonymous":
        client = await roles.client()
        response = await client.request(method, path, allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (303, "/workspace/sign-in")
        return
    client = await roles.signed_in(ROLE_IDS[role])
    data = {"csrf_token": await roles.csrf(client, "/workspace/alerts"),
            "outcome": "called_client", "note": "done"}
    before = roles.store.history(ada)
    response = await client.request(method, path, allow_redirects=False,
                                    data=data if method == "POST" else None)
    body = await response.text()
    if role in allowed:
        assert response.status == (303 if method == "POST" else 200), body
        return
    assert response.status == 404, body
    assert "Not found" in body
    assert "Ada Lovelace" not in body and "Alan Turing" not in body
    assert roles.store.history(ada) == before


@pytest.mark.parametrize("path", ["/workspace/alerts/no-such-alert", "/workspace/incidents/in-no-such-incident",
                                  "/workspace/clients/C-9999"])
async def test_what_does_not_exist_answers_the_same_404_to_the_role_that_has_the_page(
        roles: RolesSite, path: str) -> None:
    """An unknown alert (team lead), incident (operations) or client (team lead) answers 404 like a forbidden one."""
    who = OPS_ID if "incidents" in path else LENA.manager_id
    client = await roles.signed_in(who)
    response = await client.get(path)
    assert response.status == 404
