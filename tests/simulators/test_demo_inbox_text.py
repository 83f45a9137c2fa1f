"""The demo inbox prints a message's subject and recipient as written, not as Rich markup."""

from __future__ import annotations

import io

import aiohttp
from rich.console import Console

from simulators.demo import DemoInbox


async def test_brackets_in_a_subject_are_printed_as_written() -> None:
    """A subject holding ``[a-z0-9]`` and a name holding ``[bold]`` reach the console intact."""
    out = io.StringIO()
    inbox = DemoInbox(Console(file=out, width=200, color_system=None))
    url = await inbox.start()
    try:
        async with aiohttp.ClientSession() as session:
            payload = {"recipient": {"name": "Jo [bold]Smith"}, "subject": "code [a-z0-9] [/]"}
            async with session.post(f"{url}/RM-1", json=payload) as response:
                assert response.status == 204
    finally:
        await inbox.stop()
    assert "→ delivered to Jo [bold]Smith's webhook: code [a-z0-9] [/]" in out.getvalue()
