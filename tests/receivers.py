"""A real HTTP receiver for Apprise's ``json://`` service, shared by the channel and sign-in tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["JsonReceiver", "serve_json_receiver"]


@dataclass
class JsonReceiver:
    """Answers ``POST /<status>/<anything>`` with that status; keeps (path, JSON body).

    ``base`` is the ``json://127.0.0.1:<port>`` prefix of the Apprise URLs that reach it.
    """

    base: str
    posts: list[tuple[str, Any]] = field(default_factory=list)


@asynccontextmanager
async def serve_json_receiver() -> AsyncIterator[JsonReceiver]:
    """A real aiohttp receiver on 127.0.0.1 for Apprise's ``json://`` service, until exit."""
    receiver = JsonReceiver(base="")

    async def hook(request: web.Request) -> web.Response:
        receiver.posts.append((request.path, await request.json()))
        return web.json_response({}, status=int(request.match_info["status"]))

    app = web.Application()
    app.router.add_post("/{status:[0-9]+}/{tail:.*}", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    receiver.base = f"json://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield receiver
    finally:
        await runner.cleanup()
