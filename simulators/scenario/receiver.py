"""The scenario's managers' webhook: a real HTTP receiver on 127.0.0.1 that keeps what each got.

For a scenario with ``expect.follow_ups``, :func:`run_scenario` points every manager's
``webhook_url`` at ``{base}/{manager_id}``, so each message the monitor sends a manager (alerts, incident
notices, recovery follow-ups) is a real ``POST`` through the webhook channel, recorded
here by manager. A scenario run never posts anywhere else.

The receiver answers ``200`` to every well-formed JSON ``POST`` and keeps the body as
received: a message sent twice is recorded twice (that is what a strict "exactly once"
expectation must see).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["ManagerInbox", "serve_manager_inbox"]


@dataclass
class ManagerInbox:
    """What each manager's webhook received, in arrival order.

    Attributes:
        base: ``http://127.0.0.1:<port>``; a manager's webhook is ``{base}/{manager_id}``.
        received: <manager_id: the JSON bodies posted to their webhook, in order>.
    """

    base: str = ""
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def url_for(self, manager_id: str) -> str:
        """The webhook URL of ``manager_id`` (``{base}/{manager_id}``)."""
        return f"{self.base}/{manager_id}"

    def of_schema(self, manager_id: str, schema: str) -> list[dict[str, Any]]:
        """The bodies ``manager_id`` received whose ``schema`` field is ``schema`` (e.g. ``cardmon.recovery.v1``)."""
        return [body for body in self.received.get(manager_id, []) if body.get("schema") == schema]


@asynccontextmanager
async def serve_manager_inbox() -> AsyncIterator[ManagerInbox]:
    """A real aiohttp receiver on 127.0.0.1 (a free port) for the managers' webhooks, until exit.

    Yields:
        The :class:`ManagerInbox` it fills; ``base`` is set once the server listens.
    """
    inbox = ManagerInbox()

    async def hook(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "not JSON"}, status=400)
        posted = body if isinstance(body, dict) else {"body": body}
        inbox.received.setdefault(request.match_info["manager_id"], []).append(posted)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/{manager_id}", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    inbox.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield inbox
    finally:
        await runner.cleanup()
