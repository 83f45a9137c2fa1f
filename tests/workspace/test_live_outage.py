"""Live updates through a PostgreSQL outage: the stream stays open and catches up when the store is back.

Real parts: a PostgreSQL server of this module alone, stopped and started again; the
API with the workspace served by ``monitor.api.start_api``; an HTTP client reading the
event stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from aiohttp import ClientSession

from monitor.alerts.store import AlertStore
from monitor.api import build_api, start_api
from monitor.domain import AlertEvent, VipFailure
from monitor.workspace import Sessions, SignInMailer, SignInTokens, Workspace, live
from tests.postgres import PostgresServer, running_postgres
from tests.workspace.conftest import CLAIRE, PUBLIC_URL, SECRET, T0
from tests.workspace.test_live import Events, _is

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module alone, which its test stops and starts again."""
    yield from running_postgres()


def _failure() -> VipFailure:
    event = AlertEvent(
        event_id="ev-1", occurred_at=T0, channel="ATM", terminal_id="ATM00042",
        merchant_id="BNKPARIS0001", txn_type="withdrawal", amount_minor=13409, currency="EUR",
        response_code="91", outcome="technical", response_meaning="Issuer or switch is inoperative",
        pan_masked="411111******1111", card_ref="tok_1")
    return VipFailure(event=event, customer_id="C-0001", customer_name="Ada Lovelace", tier="private",
                      manager=CLAIRE, severity="high", suggested_action="Call the client.")


@pytest.mark.timeout(180)
async def test_a_stream_rides_out_a_store_outage_and_catches_up(
        own_postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """With PostgreSQL down the stream keeps its heartbeat; when it is back, an alert recorded since arrives on the same stream."""
    monkeypatch.setattr(live, "POLL_SECONDS", 0.2)
    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.2)
    caplog.set_level(logging.WARNING, logger="monitor.workspace")
    url = own_postgres.new_store_url()
    with AlertStore(url) as store:
        tokens = SignInTokens(SECRET, max_age_seconds=900)
        workspace = Workspace(store=store, tokens=tokens,
                              sessions=Sessions(store, SECRET, max_age_seconds=3600),
                              mailer=SignInMailer(tokens, PUBLIC_URL,
                                                  managers=lambda: {CLAIRE.manager_id: CLAIRE}, email=None))
        server = await start_api(build_api(store, workspace=workspace))
        try:
            session = await workspace.sessions.open(CLAIRE.manager_id)
            async with ClientSession(cookies={"cardmon_session": session.session_id}) as browser:
                response = await browser.get(f"{server.url}/workspace/alerts/events")
                assert response.status == 200
                events = Events(response)
                assert await events.comment() == "keepalive"

                await asyncio.to_thread(own_postgres.halt)
                try:
                    for _ in range(3):  # the stream lives on through failed polls
                        assert await events.comment(timeout=60) == "keepalive"
                finally:
                    await asyncio.to_thread(own_postgres.resume)

                with AlertStore(url) as writer:  # another instance, once the store is back
                    [alert_id] = writer.record([_failure()], now=T0).new_alert_ids
                await events.until(_is(alert_id, "open"), timeout=60)
                response.close()
            outage = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
            assert len(outage) == 1, outage  # logged once per outage, not once per poll
        finally:
            await server.close()
