"""A workspace with roles under test: two managers, two team leads, operations, over a real store and SMTP server.

The registry: Claire (RM-017) and Jonas (RM-042), managers; Lena (RM-001) leads both;
Omar (RM-050) leads Jonas only. Operations: Priya (OPS-7). Alerts are recorded at
times relative to now (the team and terminals pages look back a week from now).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from monitor.alerts.delivery.channels import EmailChannel
from monitor.alerts.store import AlertStore
from monitor.api import build_api
from monitor.domain import Manager
from monitor.incidents import IncidentChange, IncidentRules
from monitor.testing.smtp import SmtpSink
from monitor.workspace import Sessions, SignInMailer, SignInTokens, Workspace
from monitor.workspace.roles import RoleBook
from tests.workspace.conftest import (
    _CSRF,
    CLAIRE,
    JONAS,
    PUBLIC_URL,
    SECRET,
    Clock,
    Site,
    vip_failure,
)

__all__ = ["INCIDENT", "LENA", "OMAR", "OPS_EMAIL", "OPS_ID", "RolesSite", "client_names_fixture",
           "roles_fixture"]

LENA = Manager(manager_id="RM-001", name="Lena Hoffmann", email="lena.hoffmann@bank.example")
OMAR = Manager(manager_id="RM-050", name="Omar Haddad", email="omar.haddad@bank.example")
OPS_ID = "OPS-7"
OPS_EMAIL = "priya.nair@bank.example"
INCIDENT = "in-roles-test"
_RULES = IncidentRules.model_validate({"group_wait_seconds": 15, "group_interval_seconds": 300,
                                       "scopes": {"terminal": {"min_failures": 5}}})


class RolesSite(Site):
    """The workspace with roles: :class:`Site` and a way to record alerts at times relative to now."""

    def alert(self, number: int, manager: Manager, name: str, *, minutes_ago: float = 30,
              incident: bool = False, terminal: str = "ATM00042") -> str:
        """Record one failure of ``manager``'s client ``number`` called ``name``; return the alert ID.

        ``incident``: the failure belongs to the open terminal incident :data:`INCIDENT`.
        """
        at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
        failure = vip_failure(number, manager, at=at, name=name, terminal=terminal,
                              incident_id=INCIDENT if incident else None)
        changes = [IncidentChange(kind="opened", incident_id=INCIDENT, scope="terminal", scope_key=terminal,
                                  started_at=at, last_failure_at=at, failures=5, cards=5, terminals=1)
                   ] if incident else []
        [alert_id] = self.store.record([failure], now=at, incidents=changes,
                                       incident_rules=_RULES if incident else None,
                                       managers=self.managers).new_alert_ids
        return alert_id

    async def csrf(self, client: TestClient, page: str = "/workspace/sign-in") -> str:
        """The session's CSRF token, read from the sign-out form of ``page`` (any page of a session)."""
        response = await client.get(page)
        match = _CSRF.search(await response.text())
        assert match is not None, await response.text()
        return match.group(1)


@pytest.fixture(name="operations_see_client_names")
def client_names_fixture() -> bool:
    """Whether operations pages name clients: no (a test parametrizes it to turn it on)."""
    return False


@pytest.fixture(name="roles")
async def roles_fixture(store_location: Path | str, smtp_sink: SmtpSink,
                        operations_see_client_names: bool) -> AsyncIterator[RolesSite]:
    """The API with the workspace and its roles over a fresh SQLite or PostgreSQL store."""
    clock = Clock()
    managers = {m.manager_id: m for m in (CLAIRE, JONAS, LENA, OMAR)}
    book = RoleBook(teams={LENA.manager_id: frozenset({CLAIRE.manager_id, JONAS.manager_id}),
                           OMAR.manager_id: frozenset({JONAS.manager_id})},
                    operations={OPS_ID: ("Priya Nair", OPS_EMAIL)},
                    operations_see_client_names=operations_see_client_names)
    with AlertStore(store_location) as store:
        tokens = SignInTokens(SECRET, max_age_seconds=900, clock=clock)
        email = EmailChannel(smtp_sink.host, smtp_sink.port, sender="cardmon@bank.example")
        workspace = Workspace(
            store=store, tokens=tokens,
            sessions=Sessions(store, SECRET, max_age_seconds=12 * 3600, clock=clock),
            mailer=SignInMailer(tokens, PUBLIC_URL, managers=lambda: managers, email=email, roles=book))
        server = TestServer(build_api(store, workspace=workspace))
        await server.start_server()
        site = RolesSite(store, workspace, tokens, clock, smtp_sink, server, managers)
        try:
            yield site
        finally:
            await site.close()
            await server.close()
