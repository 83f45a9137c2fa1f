"""The workspace served for the browser tests: the API with ``/workspace`` on 127.0.0.1 over a real store.

Shared by the workspace's browser tests (plain helpers, not fixtures: each test file
makes the fixture its people need). :func:`serve_workspace` starts the real alert API
with the workspace (sign-in links mailed through a real SMTP sink when one is given,
acknowledgement links when ``links`` is given) and stops it at exit; :class:`Served`
records failures into its store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.alerts.delivery.channels import EmailChannel
from monitor.alerts.delivery.links import AckLinks
from monitor.alerts.store import AlertStore
from monitor.api import build_api, start_api
from monitor.domain import AlertEvent, Manager, VipFailure
from monitor.testing.smtp import SmtpSink
from monitor.workspace import Sessions, SignInMailer, SignInTokens, Workspace
from monitor.workspace.roles import RoleBook

SECRET = "workspace-secret-for-browser-tests-0123"
PUBLIC_URL = "http://cardmon.bank.example"
RAW_PAN = "4111111111111111"
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@dataclass
class Served:
    """The workspace under test: its base URL, its store, its sign-in tokens (and ack links)."""

    url: str
    store: AlertStore
    tokens: SignInTokens
    links: AckLinks | None = None

    def alert(self, number: int, manager: Manager, name: str | None = None, *,
              at: datetime | None = None, suggested_action: str = "Call the client to apologise.",
              **event_fields: Any) -> str:
        """Record one technical failure (code 91, a raw PAN the store masks) of ``manager``'s
        client ``C-{number:04d}`` called ``name``, at ``at`` (default ``T0 + number`` minutes);
        return the alert ID."""
        occurred_at = at or T0 + timedelta(minutes=number)
        fields: dict[str, Any] = {
            "channel": "ATM", "terminal_id": "ATM00042", "merchant_id": "BNKPARIS0001",
            "txn_type": "withdrawal", "amount_minor": 13409, "currency": "EUR",
            "response_code": "91", "outcome": "technical",
            "response_meaning": "Issuer or switch is inoperative",
            "pan_masked": RAW_PAN, "card_ref": RAW_PAN, **event_fields}
        event = AlertEvent(event_id=f"ev-{number}", occurred_at=occurred_at, **fields)
        failure = VipFailure(event=event, customer_id=f"C-{number:04d}",
                             customer_name=name or f"Client {number}", tier="private",
                             manager=manager, severity="high", suggested_action=suggested_action)
        [alert_id] = self.store.record([failure], now=occurred_at).new_alert_ids
        return alert_id


@asynccontextmanager
async def serve_workspace(store_location: Path | str, managers: Mapping[str, Manager], *,
                          smtp_sink: SmtpSink | None = None, roles: RoleBook | None = None,
                          links: AckLinks | None = None) -> AsyncIterator[Served]:
    """Serve the API with the workspace on a free port of 127.0.0.1 until exit.

    Args:
        store_location: the alert store (SQLite file or PostgreSQL URL).
        managers: the registry's managers by ID.
        smtp_sink: where sign-in links are mailed; ``None``: no relay.
        roles: team leads and operations staff; ``None``: managers only.
        links: acknowledgement links of the API; ``None``: none.
    """
    with AlertStore(store_location) as store:
        tokens = SignInTokens(SECRET, max_age_seconds=900)
        email = (EmailChannel(smtp_sink.host, smtp_sink.port, sender="cardmon@bank.example")
                 if smtp_sink is not None else None)
        workspace = Workspace(
            store=store, tokens=tokens, sessions=Sessions(store, SECRET, max_age_seconds=3600),
            mailer=SignInMailer(tokens, PUBLIC_URL, managers=lambda: managers, email=email, roles=roles))
        server = await start_api(build_api(store, links=links, workspace=workspace))
        try:
            yield Served(server.url, store, tokens, links)
        finally:
            await server.close()
