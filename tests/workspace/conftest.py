"""The workspace under test, shared by its tests: the API with the workspace over a real store and SMTP server."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from monitor.alerts.delivery.channels import EmailChannel
from monitor.alerts.store import AlertStore
from monitor.api import build_api
from monitor.domain import AlertEvent, Manager, Severity, VipFailure
from monitor.testing.smtp import SmtpSink
from monitor.workspace import Sessions, SignInMailer, SignInTokens, Workspace

SECRET = "workspace-secret-for-tests-0123"
# Plain HTTP, as the test server: a https public URL makes the cookie Secure (tested below).
PUBLIC_URL = "http://cardmon.bank.example"
CLAIRE = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example")
JONAS = Manager(manager_id="RM-042", name="Jonas Weber", email="jonas.weber@bank.example")
NO_MAIL = Manager(manager_id="RM-099", name="Nomail Person")
RAW_PAN = "4111111111111111"
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
_LINK = re.compile(r"http://cardmon\.bank\.example(/workspace/sign-in/[A-Za-z0-9_.%-]+)")
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


class Clock:
    """A settable clock for tokens and sessions."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def vip_failure(number: int, manager: Manager, *, at: datetime, name: str, severity: Severity = "high",
                terminal: str = "ATM00042", incident_id: str | None = None) -> VipFailure:
    """A technical ATM withdrawal failure of ``manager``'s client ``C-{number:04d}`` called ``name``, at ``at``.

    Its card fields carry a raw PAN that slipped in: the store must mask it.
    """
    event = AlertEvent(
        event_id=f"ev-{number}", occurred_at=at, channel="ATM", terminal_id=terminal,
        merchant_id="BNKPARIS0001", txn_type="withdrawal", amount_minor=13409, currency="EUR",
        response_code="91", outcome="technical", response_meaning="Issuer or switch is inoperative",
        pan_masked=RAW_PAN, card_ref=RAW_PAN)
    return VipFailure(event=event, customer_id=f"C-{number:04d}", customer_name=name, tier="private",
                      manager=manager, severity=severity, suggested_action="Call the client to apologise.",
                      incident_id=incident_id)


@dataclass
class Site:
    """The workspace under test."""

    store: AlertStore
    workspace: Workspace
    tokens: SignInTokens
    clock: Clock
    sink: SmtpSink
    server: TestServer
    managers: dict[str, Manager]

    async def client(self) -> TestClient:
        """A new browser-like client (its own cookie jar) on the running server."""
        client = TestClient(self.server)
        await client.start_server()
        self._clients.append(client)
        return client

    def __post_init__(self) -> None:
        self._clients: list[TestClient] = []

    async def close(self) -> None:
        for client in self._clients:
            await client.close()

    def record(self, number: int, manager: Manager = CLAIRE, *, severity: Severity = "high",
               name: str | None = None, minutes: int = 0) -> str:
        """Record one failure of client ``number`` of ``manager``; return the alert ID."""
        failure = vip_failure(number, manager, at=T0 + timedelta(minutes=minutes),
                              name=name or f"Client {number}", severity=severity)
        [alert_id] = self.store.record([failure], now=T0 + timedelta(minutes=minutes)).new_alert_ids
        return alert_id

    def link_path(self, manager_id: str) -> str:
        """The path of a fresh sign-in link for ``manager_id``."""
        return f"/workspace/sign-in/{self.tokens.issue(manager_id)}"

    async def signed_in(self, manager_id: str) -> TestClient:
        """A client signed in as ``manager_id`` through a fresh link."""
        client = await self.client()
        response = await client.post(self.link_path(manager_id), allow_redirects=False)
        assert response.status == 303, await response.text()
        return client


@pytest.fixture
async def site(store_location: Path | str, smtp_sink: SmtpSink) -> AsyncIterator[Site]:
    """The API with the workspace over a fresh SQLite or PostgreSQL store, mailing through a real SMTP server."""
    clock = Clock()
    managers = {m.manager_id: m for m in (CLAIRE, JONAS, NO_MAIL)}  # the registry, changeable
    with AlertStore(store_location) as store:
        tokens = SignInTokens(SECRET, max_age_seconds=900, clock=clock)
        email = EmailChannel(smtp_sink.host, smtp_sink.port, sender="cardmon@bank.example")
        workspace = Workspace(
            store=store, tokens=tokens,
            sessions=Sessions(store, SECRET, max_age_seconds=12 * 3600, clock=clock),
            mailer=SignInMailer(tokens, PUBLIC_URL, managers=lambda: managers, email=email))
        server = TestServer(build_api(store, workspace=workspace))
        await server.start_server()
        site = Site(store, workspace, tokens, clock, smtp_sink, server, managers)
        try:
            yield site
        finally:
            await site.close()
            await server.close()
