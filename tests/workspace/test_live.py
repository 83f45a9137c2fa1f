"""Live updates of the manager's alert list: the server-sent event stream and its bounds.

Real parts: the aiohttp application over real HTTP (aiohttp's test server, or
``monitor.api.start_api``), a real SQLite or PostgreSQL alert store (fixture ``site`` in
conftest.py), and a second instance of the application on the same store.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, ClientSession, web
from aiohttp.test_utils import TestClient, TestServer

from monitor.alerts.store import AlertStore, RecoveryMatch
from monitor.api import build_api, start_api
from monitor.testing.fixtures import wait_until
from monitor.workspace import Sessions, SignInMailer, SignInTokens, Workspace, live
from tests.workspace.conftest import (
    CLAIRE,
    JONAS,
    PUBLIC_URL,
    RAW_PAN,
    SECRET,
    T0,
    Site,
    vip_failure,
)


class Events:
    """Reads one event stream: ``(name, data)`` pairs and comments, as they come."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []
        self.retry: int | None = None

    async def comment(self, timeout: float = 15.0) -> str:
        """The next comment line's text (events on the way are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                assert raw, "the stream ended"
                if raw.startswith(b":"):
                    return raw.decode()[1:].strip()

    async def next(self, timeout: float = 15.0) -> tuple[str, Any] | None:
        """The next event (``None`` when the stream ends); comments are collected on the way."""
        name, data = "message", []
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    return None
                line = raw.decode().rstrip("\n")
                if line == "":
                    if data:
                        return name, json.loads("\n".join(data))
                    name = "message"
                elif line.startswith(":"):
                    self.comments.append(line[1:].strip())
                elif line.startswith("retry:"):
                    self.retry = int(line[6:])
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())

    async def until(self, wanted: Any, timeout: float = 15.0) -> list[tuple[str, Any]]:
        """Every event up to and including the first for which ``wanted(name, data)`` holds."""
        seen: list[tuple[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            event = await self.next(max(0.1, deadline - time.monotonic()))
            assert event is not None, f"the stream ended after {seen}"
            seen.append(event)
            if wanted(*event):
                return seen


async def _stream(client: TestClient) -> Events:
    response = await client.get("/workspace/alerts/events")
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return Events(response)


def _is(alert_id: str, state: str | None = None) -> Any:
    return lambda name, data: (name == "alert" and data["id"] == alert_id
                               and (state is None or data["state"] == state))


async def test_without_a_session_the_stream_answers_401(site: Site) -> None:
    """No session (or a made-up cookie) gets 401 and no stream."""
    anonymous = await site.client()
    assert (await anonymous.get("/workspace/alerts/events")).status == 401
    anonymous.session.cookie_jar.update_cookies({"cardmon_session": "made-up"})
    assert (await anonymous.get("/workspace/alerts/events")).status == 401


async def test_the_stream_starts_with_the_list_then_carries_new_alerts_and_changes(site: Site) -> None:
    """The first pass sends the manager's rows; a new alert and someone else's acknowledgement follow without asking."""
    first = site.record(1, name="Ada Lovelace")
    claire = await site.signed_in("RM-017")
    events = await _stream(claire)
    [(_, row)] = await events.until(_is(first))
    assert events.retry == live.RETRY_MILLISECONDS
    assert row == {"id": first, "url": f"/workspace/alerts/{first}", "customer_name": "Ada Lovelace",
                   "manager_name": "Claire Martin",
                   "tier": "private", "severity": "high", "severity_text": "high", "state": "open",
                   "state_text": "open", "open": True, "event_count": 1, "since": "2026-12-07 09:00 UTC",
                   "order": row["order"], "recovery": None, "recovery_text": ""}
    assert row["order"].startswith("0|")

    second = site.record(2, name="Grace Hopper", severity="medium", minutes=1)
    [(_, new)] = await events.until(_is(second))
    assert (new["customer_name"], new["severity"], new["state"]) == ("Grace Hopper", "medium", "open")
    assert row["order"] < new["order"]  # high before medium

    await asyncio.to_thread(site.store.acknowledge, first, by="RM-017", via="link")
    changed = await events.until(_is(first, "acknowledged"))
    assert [d["id"] for _, d in changed] == [first]  # only what changed
    assert changed[-1][1]["open"] is False and changed[-1][1]["order"].startswith("1|")
    await asyncio.to_thread(site.store.resolve, first, by="RM-017", via="api", note="Called her", outcome="called_client")
    await events.until(_is(first, "resolved"))
    assert RAW_PAN not in json.dumps(changed)


async def test_a_decided_recovery_watch_reaches_the_stream_as_the_rows_badge(site: Site) -> None:
    """A watch decided after the page opened changes the row: "recovered" (then another's "abandoned") in the reader's words."""
    ada, grace = (site.store.record(
        [vip_failure(n, CLAIRE, at=T0, name=name)], now=T0,
        recovery_window_seconds=1800).new_alert_ids[0]
        for n, name in ((1, "Ada Lovelace"), (2, "Grace Hopper")))
    claire = await site.signed_in("RM-017")
    events = await _stream(claire)
    first = await events.until(lambda name, data: name == "alert" and data["id"] == grace)
    assert {d["id"]: d["recovery"] for _, d in first} == {ada: None, grace: None}  # watching
    await asyncio.to_thread(
        site.store.mark_recovered,
        [RecoveryMatch(alert_id=ada, recovered_at=T0 + timedelta(minutes=4), event_id="ok-1",
                       terminal_id="ATM-0042")], now=T0 + timedelta(minutes=4))
    changed = await events.until(lambda name, data: data.get("recovery") == "recovered")
    assert [(d["id"], d["recovery_text"]) for _, d in changed] == [(ada, "recovered")]
    later = T0 + timedelta(minutes=31)
    await asyncio.to_thread(site.store.abandon_watches, later, now=later)
    changed = await events.until(lambda name, data: data.get("recovery") == "abandoned")
    assert [(d["id"], d["recovery_text"]) for _, d in changed] == [(grace, "abandoned")]


async def test_another_managers_stream_never_carries_her_alerts(site: Site) -> None:
    """Jonas's stream carries his alerts only: Claire's, recorded before his, never reach it."""
    site.record(1, CLAIRE, name="Ada Lovelace")
    jonas = await site.signed_in("RM-042")
    events = await _stream(jonas)
    claires = [site.record(n, CLAIRE, name=f"Claire's client {n}") for n in (2, 3)]
    await asyncio.to_thread(site.store.acknowledge, claires[0], by="RM-017", via="api")
    his = site.record(4, JONAS, name="Alan Turing")
    seen = await events.until(_is(his))
    assert [data["id"] for _, data in seen] == [his]
    assert "Ada Lovelace" not in json.dumps(seen)


async def test_a_stream_ends_with_signed_out_when_its_session_is_revoked(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """Revoking the manager's sessions ends her open stream with a ``signed-out`` event."""
    monkeypatch.setattr(live, "SESSION_CHECK_SECONDS", 0.2)
    claire = await site.signed_in("RM-017")
    events = await _stream(claire)
    await site.workspace.sessions.revoke_manager("RM-017")
    assert await events.until(lambda name, _: name == "signed-out") == [("signed-out", {})]
    assert await events.next() is None


async def test_an_idle_stream_sends_heartbeat_comments(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing to say, the stream writes a ``: keepalive`` comment every heartbeat interval."""
    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.2)
    monkeypatch.setattr(live, "POLL_SECONDS", 0.1)
    claire = await site.signed_in("RM-017")
    events = await _stream(claire)
    assert await events.comment() == "keepalive"
    assert await events.comment() == "keepalive"


def _live_streams(app: web.Application) -> live.LiveStreams:
    """The workspace sub-application's :class:`LiveStreams` inside the API application ``app``."""
    for resource in app.router.resources():
        sub = resource.get_info().get("app")
        if isinstance(sub, web.Application) and live.LIVE in sub:
            return sub[live.LIVE]
    raise AssertionError("no workspace in this application")


async def test_one_session_holds_a_bounded_number_of_streams(site: Site) -> None:
    """A session's streams beyond the limit answer 429; closing one frees its place."""
    claire = await site.signed_in("RM-017")
    streams = [await _stream(claire) for _ in range(live.MAX_STREAMS_PER_SESSION)]
    refused = await claire.get("/workspace/alerts/events")
    assert refused.status == 429 and refused.headers["Retry-After"] == "30"
    jonas = await site.signed_in("RM-042")  # another session is not counted against hers
    await _stream(jonas)
    streams[0].response.close()
    streams_of = _live_streams(site.server.app)
    await wait_until(lambda: streams_of.open_count == live.MAX_STREAMS_PER_SESSION, timeout=10,
                     what="the closed stream to be counted out")
    await _stream(claire)


async def test_the_list_page_loads_the_script_and_allows_only_its_own(site: Site) -> None:
    """The list page's policy allows this site's scripts and connections only; the script is served as JavaScript."""
    claire = await site.signed_in("RM-017")
    page = await claire.get("/workspace/alerts")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "default-src 'none'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    html = await page.text()
    assert '<script src="/workspace/static/live.js" defer></script>' in html
    assert 'role="status"' in html
    other = await claire.get("/workspace/sign-in")
    assert "script-src" not in other.headers["Content-Security-Policy"]  # other pages: no scripts
    script = await (await site.client()).get("/workspace/static/live.js")
    assert script.status == 200
    assert script.headers["Content-Type"].startswith("text/javascript")
    body = await script.text()
    assert "EventSource" in body and "innerHTML" not in body.replace("no data reaches innerHTML", "")
    assert (await claire.get("/workspace/static/../pages.py")).status == 404
    assert (await claire.get("/workspace/static/other.js")).status == 404


async def test_a_change_made_through_another_instance_reaches_the_stream(
        site: Site, store_location: Path | str) -> None:
    """Two instances on one store: an alert recorded and acknowledged by one shows on a stream of the other."""
    with AlertStore(store_location) as other_store:
        tokens = SignInTokens(SECRET, max_age_seconds=900)
        workspace = Workspace(store=other_store, tokens=tokens,
                              sessions=Sessions(other_store, SECRET, max_age_seconds=3600),
                              mailer=SignInMailer(tokens, PUBLIC_URL, managers=lambda: site.managers, email=None))
        other = TestServer(build_api(other_store, workspace=workspace))
        await other.start_server()
        try:
            claire = await site.signed_in("RM-017")  # signed in on instance one
            cookie = claire.session.cookie_jar.filter_cookies(claire.make_url("/workspace/"))
            async with ClientSession(cookies={k: v.value for k, v in cookie.items()}) as browser:
                response = await browser.get(other.make_url("/workspace/alerts/events"))
                assert response.status == 200
                events = Events(response)
                alert_id = site.record(7, name="Katherine Johnson")  # instance one's store
                await events.until(_is(alert_id, "open"))
                await asyncio.to_thread(site.store.acknowledge, alert_id, by="RM-017", via="link")
                await events.until(_is(alert_id, "acknowledged"))
                response.close()
        finally:
            await other.close()


async def test_shutting_down_ends_open_streams_at_once(store_location: Path | str) -> None:
    """Closing the server ends every open stream within seconds (not aiohttp's 60 s wait for handlers), counted out."""
    with AlertStore(store_location) as store:
        tokens = SignInTokens(SECRET, max_age_seconds=900)
        workspace = Workspace(store=store, tokens=tokens,
                              sessions=Sessions(store, SECRET, max_age_seconds=3600),
                              mailer=SignInMailer(tokens, PUBLIC_URL,
                                                  managers=lambda: {CLAIRE.manager_id: CLAIRE}, email=None))
        app = build_api(store, workspace=workspace)
        server = await start_api(app)
        closed = False
        try:
            session = await workspace.sessions.open("RM-017")
            async with ClientSession(cookies={"cardmon_session": session.session_id}) as browser:
                responses = []
                for _ in range(3):
                    response = await browser.get(f"{server.url}/workspace/alerts/events")
                    assert response.status == 200
                    await response.content.readline()  # "retry: ...": the stream runs
                    responses.append(response)
                assert _live_streams(app).open_count == 3
                started = time.monotonic()
                await server.close()
                closed = True
                assert time.monotonic() - started < 5
                for response in responses:
                    async with asyncio.timeout(5):
                        while await response.content.readline():
                            pass
            assert _live_streams(app).open_count == 0
        finally:
            if not closed:
                await server.close()


async def test_a_watch_decided_on_an_alert_the_session_may_not_see_never_reaches_its_stream(
    site: Site,
) -> None:
    """Jonas asking for Claire's list gets his own; her decided watches never reach it, his badge reads French."""
    from dataclasses import replace

    site.managers[JONAS.manager_id] = replace(JONAS, locale="fr")
    hers = site.store.record([vip_failure(1, CLAIRE, at=T0, name="Ada Lovelace")], now=T0,
                             recovery_window_seconds=1800).new_alert_ids[0]
    his = site.store.record([vip_failure(2, JONAS, at=T0, name="Alan Turing")], now=T0,
                            recovery_window_seconds=1800).new_alert_ids[0]
    jonas = await site.signed_in(JONAS.manager_id)
    response = await jonas.get(f"/workspace/alerts/events?manager={CLAIRE.manager_id}")
    assert response.status == 200
    events = Events(response)
    first = await events.until(_is(his))
    await asyncio.to_thread(
        site.store.mark_recovered,
        [RecoveryMatch(alert_id=hers, recovered_at=T0 + timedelta(minutes=4), event_id="ok-1",
                       terminal_id="ATM-0042")], now=T0 + timedelta(minutes=4))
    later = T0 + timedelta(minutes=31)
    await asyncio.to_thread(site.store.abandon_watches, later, now=later)
    changed = await events.until(lambda name, data: data.get("recovery") == "abandoned")
    seen = json.dumps(first + changed)
    assert hers not in seen and "Ada Lovelace" not in seen and "recovered" not in seen
    assert [(d["id"], d["recovery_text"]) for _, d in changed] == [(his, "abandon")]
