"""Fixtures for the alert tests: failures to record, a real SMTP server, real HTTP receivers."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any, cast

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from monitor.domain import AlertEvent, Manager, Severity, VipFailure

PARIS_MANAGER = Manager(
    manager_id="RM-017",
    name="Claire Martin",
    email="claire.martin@bank.example",
    timezone="Europe/Paris",
)


def _make_failure(
    event_id: str,
    occurred_at: datetime,
    *,
    customer_id: str = "C-1001",
    customer_name: str = "Ada Lovelace",
    tier: str = "private",
    manager: Manager = PARIS_MANAGER,
    severity: Severity = "high",
    suggested_action: str = "Call the client and offer an emergency cash advance.",
    **event_fields: Any,
) -> VipFailure:
    """Return a VIP failure of an ATM cash withdrawal declined for insufficient funds."""
    fields: dict[str, Any] = {
        "channel": "ATM",
        "terminal_id": "ATM00042",
        "merchant_id": "BNKPARIS0001",
        "txn_type": "withdrawal",
        "amount_minor": 13409,
        "currency": "USD",
        "response_code": "51",
        "outcome": "customer",
        "response_meaning": "Insufficient funds",
        "pan_masked": "411111******1111",
        "card_ref": "tok_9f8e7d6c5b4a39281706",
        "city": "Paris",
        "region": "IDF",
    }
    fields.update(event_fields)
    return VipFailure(
        event=AlertEvent(event_id=event_id, occurred_at=occurred_at, **fields),
        customer_id=customer_id,
        customer_name=customer_name,
        tier=tier,
        manager=manager,
        severity=severity,
        suggested_action=suggested_action,
    )


@pytest.fixture
def make_failure() -> Callable[..., VipFailure]:
    """Builder of VIP failures: ``make_failure(event_id, occurred_at, **overrides)``."""
    return _make_failure


@pytest.fixture
def paris_manager() -> Manager:
    """A relationship manager in Paris with an e-mail address and no webhook."""
    return PARIS_MANAGER


@pytest.fixture
def unused_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens."""
    return free_port()


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return cast(int, sock.getsockname()[1])


class MailCollector:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []
        self._lock = threading.Lock()  # the server runs in its own thread

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(cast(EmailMessage, message))
            self.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    host: str
    port: int
    mail: MailCollector


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that collects what it receives."""
    collector = MailCollector()
    controller = Controller(collector, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", controller.port, collector)
    finally:
        controller.stop()


@dataclass
class Receiver:
    """A real HTTP receiver; ``requests`` holds (headers, JSON body) of each POST."""

    url: str
    requests: list[tuple[dict[str, str], Any]] = field(default_factory=list)


@pytest.fixture
async def http_receiver() -> AsyncIterator[Callable[[list[int]], Awaitable[Receiver]]]:
    """Start aiohttp receivers answering the given status codes in turn (the last one repeats)."""
    runners: list[web.AppRunner] = []

    async def start(statuses: list[int]) -> Receiver:
        receiver = Receiver(url="")
        answers = list(statuses)

        async def hook(request: web.Request) -> web.Response:
            receiver.requests.append((dict(request.headers), await request.json()))
            status = answers.pop(0) if len(answers) > 1 else answers[0]
            return web.json_response({"ok": status < 300}, status=status)

        app = web.Application()
        app.router.add_post("/hooks/rm", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        receiver.url = f"http://127.0.0.1:{port}/hooks/rm?token=s3cret"
        return receiver

    yield start
    for runner in runners:
        await runner.cleanup()
