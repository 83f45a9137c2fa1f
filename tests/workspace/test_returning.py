"""From a notification's acknowledgement link to the alert in the workspace, and back after signing in.

Real parts: the aiohttp application served by aiohttp's test server over a real SQLite or
PostgreSQL alert store, and a real SMTP server receiving the sign-in link (fixture
``site`` in conftest.py); ``safe_next`` is also checked on its own.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer

from monitor.alerts.delivery.links import AckLinks
from monitor.api import build_api
from monitor.testing.fixtures import wait_until
from monitor.workspace.returning import safe_next
from tests.workspace.conftest import CLAIRE, PUBLIC_URL, SECRET, Site

_MAILED = re.compile(r"http://cardmon\.bank\.example(/workspace/sign-in/\S+)")
#: Places a sign-in must never return to: other sites, other parts of cardmon, tricks.
UNSAFE = [
    "https://evil.example/workspace/alerts",
    "//evil.example/workspace/alerts",
    "/\\evil.example/workspace/alerts",
    "\\\\evil.example",
    "/workspace//evil.example",
    "/workspace/../alerts/x",
    "/workspace/%2e%2e/%2e%2e/x",
    "/workspace/alerts/x?token=y",
    "/workspace/alerts/x#frag",
    "/workspace/alerts/x\r\nSet-Cookie: cardmon_session=x",
    "/workspace/alerts/x y",
    "/workspace/alerts/%zz",
    " /workspace/alerts",
    "javascript:alert(1)//workspace/",
    "/alerts/x/ack",
    "/workspace/sign-in/abc",
    "/workspace/sign-out",
    "/workspace/" + "a" * 400,
    "",
    # Escaped forms of the above: refused as their plain forms are.
    "/workspace/..%2Fx",
    "/workspace/%2E%2E%2Fx",
    "/workspace/%73ign-in/x",
    "/workspace/%00",
    "/workspace/alerts/%0d%0a",
    "/workspace/%5Cevil",
    "/workspace/%2F%2Fevil.example",
]


@pytest.mark.parametrize("value", ["/workspace/alerts", "/workspace/alerts/al-kk76vmy7",
                                   "/workspace/alerts/C%2F0001"])
def test_a_workspace_path_is_a_safe_place_to_return_to(value: str) -> None:
    """A relative path inside the workspace is kept as it is."""
    assert safe_next(value) == value


@pytest.mark.parametrize("value", [*UNSAFE, None, 42, ["/workspace/alerts"]])
def test_anything_else_is_not_a_place_to_return_to(value: object) -> None:
    """URLs, other sites, other paths, dot segments, queries, control characters and non-strings are refused."""
    assert safe_next(value) is None


async def test_an_alert_opened_without_a_session_comes_back_after_the_mailed_sign_in(site: Site) -> None:
    """The alert page sends to sign-in with ``next``; the form, the mailed link and its button carry it; the sign-in lands on the alert."""
    alert_id = site.record(1, name="Ada Lovelace")
    browser = await site.client()
    page = f"/workspace/alerts/{alert_id}"
    answer = await browser.get(page, allow_redirects=False)
    assert answer.status == 303
    sign_in = answer.headers["Location"]
    assert sign_in == f"/workspace/sign-in?next={quote(page, safe='')}"
    form = await (await browser.get(sign_in)).text()
    assert f'<input type="hidden" name="next" value="{page}">' in form
    asked = await browser.post("/workspace/sign-in", data={"who": CLAIRE.email, "next": page})
    assert asked.status == 200
    await wait_until(lambda: bool(site.sink.deliveries()), timeout=30, what="the sign-in mail")
    [(_, _, text)] = site.sink.deliveries()
    found = _MAILED.search(text)
    assert found is not None, text
    link = found.group(1)
    assert link.endswith(f"?next={quote(page, safe='')}")
    confirm = await (await browser.get(link)).text()
    assert f'action="{link}"' in confirm
    signed_in = await browser.post(link, allow_redirects=False)
    assert signed_in.status == 303 and signed_in.headers["Location"] == page
    alert = await browser.get(page)
    assert alert.status == 200 and "Ada Lovelace" in await alert.text()


async def test_a_client_page_opened_without_a_session_returns_there_too(site: Site) -> None:
    """The client page, like the alert page, sends to sign-in with itself as ``next``."""
    site.record(1, name="Ada Lovelace")
    answer = await (await site.client()).get("/workspace/clients/C-0001", allow_redirects=False)
    assert answer.status == 303
    assert answer.headers["Location"] == "/workspace/sign-in?next=%2Fworkspace%2Fclients%2FC-0001"


@pytest.mark.parametrize("unsafe", UNSAFE)
async def test_a_sign_in_never_returns_outside_the_workspace(site: Site, unsafe: str) -> None:
    """An unsafe ``next`` is dropped everywhere: not in the form, not in the mailed link, and the sign-in lands on the alert list."""
    browser = await site.client()
    form = await (await browser.get("/workspace/sign-in", params={"next": unsafe})).text()
    assert 'name="next"' not in form
    assert "evil" not in form
    await browser.post("/workspace/sign-in", data={"who": CLAIRE.email, "next": unsafe})
    await wait_until(lambda: bool(site.sink.deliveries()), timeout=30, what="the sign-in mail")
    [(_, _, text)] = site.sink.deliveries()
    found = _MAILED.search(text)
    assert found is not None and "next" not in found.group(1)
    link = f"{site.link_path('RM-017')}?next={quote(unsafe, safe='')}"
    confirm = await (await browser.get(link)).text()
    assert "next=" not in confirm and "evil" not in confirm
    signed_in = await browser.post(link, allow_redirects=False)
    assert signed_in.status == 303 and signed_in.headers["Location"] == "/workspace/alerts"


@pytest.mark.parametrize("workspace_served", [True, False])
async def test_the_acknowledgement_link_page_offers_the_workspace_when_it_is_served(
        site: Site, workspace_served: bool) -> None:
    """Before and after a one-click acknowledgement, the link's page links to the alert in the workspace (only when served)."""
    alert_id = site.record(1, name="Ada Lovelace")
    links = AckLinks(SECRET, PUBLIC_URL)
    app = build_api(site.store, links=links, workspace=site.workspace if workspace_served else None)
    server = TestServer(app)
    client = TestClient(server)
    await client.start_server()
    try:
        path = links.url(alert_id, CLAIRE.manager_id).removeprefix(PUBLIC_URL)
        offer = f'<a href="/workspace/alerts/{alert_id}">Open in your workspace</a>'
        before = await (await client.get(path)).text()
        assert "Acknowledge this alert?" in before
        assert (offer in before) is workspace_served
        acked = await client.post(path, data={"note": "On it"})
        assert acked.status == 200
        after = await acked.text()
        assert "Acknowledged" in after and (offer in after) is workspace_served
        assert site.store.state_of(alert_id) == "acknowledged"  # still one click
        again = await (await client.get(path)).text()
        assert "Already acknowledged" in again and (offer in again) is workspace_served
        refused = await (await client.get(f"/alerts/{alert_id}/ack?token=forged")).text()
        assert "Open in your workspace" not in refused  # a refused link offers nothing
    finally:
        await client.close()
