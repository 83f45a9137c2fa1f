"""Signing in to the workspace through a mailed link, sessions, CSRF and the manager's own alerts.

Real parts: the aiohttp application served by aiohttp's test server, a real SQLite or
PostgreSQL alert store, and a real SMTP server (aiosmtpd) receiving the sign-in mails.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import aiohttp
import pytest
import trustme
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from monitor.api import build_api
from monitor.workspace import SESSION_COOKIE, SignInMailer, Workspace
from tests.workspace.conftest import CLAIRE, JONAS, PUBLIC_URL, RAW_PAN, _CSRF, _LINK, Site


async def _ask(client: TestClient, who: str) -> str:
    response = await client.post("/workspace/sign-in", data={"who": who})
    assert response.status == 200
    return await response.text()


def _cookie_header(response: ClientResponse) -> str:
    [header] = [v for k, v in response.headers.items() if k.lower() == "set-cookie"]
    return header


async def test_the_link_goes_only_to_the_address_the_registry_holds(site: Site) -> None:
    """Asking by ID or by address (any case) mails the registry's address; unknown or mail-less managers get the same page and no mail."""
    client = await site.client()
    form = await client.get("/workspace/sign-in")
    assert form.status == 200 and '<label for="who">' in await form.text()
    answers = [await _ask(client, who) for who in
               ("RM-017", "CLAIRE.MARTIN@bank.example", "RM-404", "attacker@evil.example", "RM-099")]
    assert len(set(answers)) == 1  # the same answer whatever happened
    await site.workspace.close()  # every background send has finished
    messages = site.sink.messages()
    assert [recipients for recipients, _ in messages] == [[CLAIRE.email], [CLAIRE.email]]
    for _, mail in messages:
        assert mail["To"] == CLAIRE.email
        assert _LINK.search(mail.get_content()) is not None


async def test_a_mailed_link_signs_in_once(site: Site) -> None:
    """The mailed link shows a button (GET uses nothing), its POST opens a session and redirects; a second use is refused."""
    site.record(1)
    client = await site.client()
    await _ask(client, "RM-017")
    await site.workspace.close()
    [(_, mail)] = site.sink.messages()
    match = _LINK.search(mail.get_content())
    assert match is not None
    path = urlsplit(match.group(0)).path
    for _ in range(2):  # a mail scanner's prefetch does not use the link up
        page = await client.get(path)
        assert page.status == 200 and "Sign in as Claire Martin" in await page.text()
        assert SESSION_COOKIE not in {c.key for c in client.session.cookie_jar}
        assert page.headers["Referrer-Policy"] == "same-origin"
    response = await client.post(path, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/workspace/alerts"
    alerts = await client.get("/workspace/alerts")
    assert alerts.status == 200 and "Client 1" in await alerts.text()
    again = await (await site.client()).post(path, allow_redirects=False)
    assert again.status == 403 and "already used" in await again.text()
    used = await (await site.client()).get(path)  # the used link's page says so, no button
    assert used.status == 403 and "already used" in await used.text()


async def test_the_session_cookie_is_httponly_lax_and_scoped(site: Site) -> None:
    """The session cookie is HttpOnly, SameSite=Lax, limited to /workspace, expires with the session, and not Secure over plain HTTP."""
    client = await site.client()
    response = await client.post(site.link_path("RM-017"), allow_redirects=False)
    header = _cookie_header(response)
    assert header.startswith(f"{SESSION_COOKIE}=")
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in header.split(";")[1:]}
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "samesite=lax"
    assert attributes["path"] == "Path=/workspace"
    assert attributes["max-age"] == f"Max-Age={12 * 3600}"
    assert "secure" not in attributes  # served over plain HTTP here
    session_id = header.split(";")[0].split("=", 1)[1]
    assert site.store.find_session(session_id, now=datetime.now(UTC)) is None  # stored hashed only


@pytest.mark.parametrize("problem", ["expired", "tampered", "unknown_manager", "cross_site",
                                     "opaque_origin"])
async def test_bad_links_are_refused(site: Site, problem: str) -> None:
    """An expired or tampered link, one for a manager no longer in the registry, or a sign-in posted from another site opens no session."""
    client = await site.client()
    path = site.link_path("RM-404" if problem == "unknown_manager" else "RM-017")
    headers = {}
    if problem == "expired":
        site.clock.now += timedelta(seconds=901)
    elif problem == "tampered":
        path = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    elif problem == "cross_site":
        headers = {"Origin": "https://evil.example"}
    elif problem == "opaque_origin":  # a sandboxed frame or a data: page
        headers = {"Origin": "null"}
    if problem not in ("cross_site", "opaque_origin"):
        page = await client.get(path)
        assert page.status == 403 and "Ask for a new sign-in link" in await page.text()
    response = await client.post(path, headers=headers, allow_redirects=False)
    assert response.status == 403
    assert "set-cookie" not in {k.lower() for k in response.headers}
    if problem in ("cross_site", "opaque_origin"):  # the refused post did not use the link up
        same_site = {"Origin": PUBLIC_URL}  # as a browser behind the bank's proxy sends it
        assert (await client.post(path, headers=same_site, allow_redirects=False)).status == 303


async def test_pages_need_a_live_session(site: Site) -> None:
    """Without a session, after it expires, once it is revoked, or once its manager left the registry, the pages redirect to the sign-in form."""
    alert_id = site.record(1)
    anonymous = await site.client()
    for path, back in (("/workspace/alerts", ""),
                       (f"/workspace/alerts/{alert_id}", f"?next=%2Fworkspace%2Falerts%2F{alert_id}")):
        response = await anonymous.get(path, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == f"/workspace/sign-in{back}"
    client = await site.signed_in("RM-017")
    assert (await client.get("/workspace/alerts", allow_redirects=False)).status == 200
    site.clock.now += timedelta(hours=12, seconds=1)
    assert (await client.get("/workspace/alerts", allow_redirects=False)).status == 303
    site.clock.now = datetime.now(UTC)
    client = await site.signed_in("RM-017")
    await site.workspace.sessions.revoke_manager("RM-017")
    assert (await client.get("/workspace/alerts", allow_redirects=False)).status == 303
    client = await site.signed_in("RM-017")
    del site.managers["RM-017"]  # the manager left the registry
    assert (await client.get("/workspace/alerts", allow_redirects=False)).status == 303


async def test_sign_out_needs_the_csrf_token(site: Site) -> None:
    """A sign-out POST without the session's CSRF token, or with another session's, is refused; with it the session ends."""
    client = await site.signed_in("RM-017")
    other = await site.signed_in("RM-017")
    page = await client.get("/workspace/alerts")
    token = _CSRF.search(await page.text())
    other_token = _CSRF.search(await (await other.get("/workspace/alerts")).text())
    assert token is not None and other_token is not None and token.group(1) != other_token.group(1)
    for data in ({}, {"csrf_token": ""}, {"csrf_token": other_token.group(1)}):
        refused = await client.post("/workspace/sign-out", data=data, allow_redirects=False)
        assert refused.status == 403
    assert (await client.get("/workspace/alerts", allow_redirects=False)).status == 200
    done = await client.post("/workspace/sign-out", data={"csrf_token": token.group(1)},
                             allow_redirects=False)
    assert done.status == 303 and done.headers["Location"] == "/workspace/sign-in"
    assert (await client.get("/workspace/alerts", allow_redirects=False)).status == 303
    assert (await other.get("/workspace/alerts", allow_redirects=False)).status == 200


async def test_a_manager_sees_only_their_own_clients(site: Site) -> None:
    """Each manager lists only their clients' alerts; another manager's alert, or none, answers the same 404."""
    claires = site.record(1, CLAIRE, name="Claire Client")
    jonass = site.record(2, JONAS, name="Jonas Client")
    claire, jonas = await site.signed_in("RM-017"), await site.signed_in("RM-042")
    claire_list = await (await claire.get("/workspace/alerts")).text()
    jonas_list = await (await jonas.get("/workspace/alerts")).text()
    assert "Claire Client" in claire_list and "Jonas Client" not in claire_list
    assert "Jonas Client" in jonas_list and "Claire Client" not in jonas_list
    own = await claire.get(f"/workspace/alerts/{claires}")
    assert own.status == 200 and "Claire Client" in await own.text()
    foreign = await jonas.get(f"/workspace/alerts/{claires}")
    missing = await jonas.get("/workspace/alerts/al-does-not-exist")
    assert foreign.status == missing.status == 404
    assert await foreign.text() == await missing.text()
    assert "Claire Client" not in await foreign.text()
    assert (await claire.get(f"/workspace/alerts/{jonass}")).status == 404


async def test_the_list_puts_open_alerts_first_by_severity_then_age(site: Site) -> None:
    """Open alerts come before acknowledged ones, higher severity first, then the oldest first."""
    acked = site.record(1, severity="high", name="Acked High", minutes=0)
    site.record(2, severity="medium", name="Open Medium", minutes=1)
    site.record(3, severity="high", name="Open High Newer", minutes=3)
    site.record(4, severity="high", name="Open High Older", minutes=2)
    site.store.acknowledge(acked, by="RM-017", via="api")
    client = await site.signed_in("RM-017")
    text = await (await client.get("/workspace/alerts")).text()
    names = ["Open High Older", "Open High Newer", "Open Medium", "Acked High"]
    positions = [text.index(name) for name in names]
    assert positions == sorted(positions)


async def test_pages_escape_names_and_never_show_a_raw_pan(site: Site) -> None:
    """A client name with markup is escaped, and a PAN that slipped into an event appears only masked."""
    alert_id = site.record(1, name="<script>alert(1)</script>")
    client = await site.signed_in("RM-017")
    for path in ("/workspace/alerts", f"/workspace/alerts/{alert_id}"):
        response = await client.get(path)
        text = await response.text()
        assert response.status == 200
        assert "<script>" not in text and "&lt;script&gt;" in text
        assert RAW_PAN not in text
        assert response.headers["Cache-Control"] == "no-store"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


async def test_a_store_failure_never_logs_the_link(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    """When the store fails during a sign-in, the answer is a 5xx and the log names the route, never the token."""
    path = site.link_path("RM-017")
    token = path.rsplit("/", 1)[1]
    site.store.close()
    client = await site.client()
    with caplog.at_level("WARNING"):
        response = await client.post(path, allow_redirects=False)
    assert response.status in (500, 503)
    assert token not in await response.text()
    assert token not in caplog.text
    assert "/workspace/sign-in/{token}" in caplog.text


async def test_the_session_cookie_is_secure_over_tls(site: Site) -> None:
    """Served over TLS, the sign-in sets the session cookie with the Secure attribute."""
    ca = trustme.CA()
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ssl)
    client_ssl = ssl.create_default_context()
    ca.configure_trust(client_ssl)
    runner = web.AppRunner(build_api(site.store, workspace=site.workspace))
    await runner.setup()
    tls_site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl)
    await tls_site.start()
    try:
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            response = await session.post(f"https://127.0.0.1:{port}{site.link_path('RM-017')}",
                                          ssl=client_ssl, allow_redirects=False)
            assert response.status == 303
            attributes = {part.strip().lower() for part in _cookie_header(response).split(";")[1:]}
            assert "secure" in attributes and "httponly" in attributes
    finally:
        await runner.cleanup()


async def test_the_cookie_is_secure_behind_a_tls_proxy(site: Site) -> None:
    """With an https public URL (a TLS proxy in front), the cookie is Secure even though cardmon itself speaks plain HTTP."""
    proxied = Workspace(store=site.store, tokens=site.tokens, sessions=site.workspace.sessions,
                        mailer=SignInMailer(site.tokens, "https://cardmon.bank.example",
                                            managers=lambda: {CLAIRE.manager_id: CLAIRE}, email=None))
    async with TestClient(TestServer(build_api(site.store, workspace=proxied))) as client:
        response = await client.post(site.link_path("RM-017"), allow_redirects=False,
                                     headers={"Origin": "https://cardmon.bank.example"})
        assert response.status == 303
        attributes = {part.strip().lower() for part in _cookie_header(response).split(";")[1:]}
        assert "secure" in attributes
