"""What every API handler shares: the application's keys, JSON errors, the bearer check, bodies, records."""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any, Final

from aiohttp import web

from monitor.alerts.delivery.links import AckLinks
from monitor.alerts.export import alert_record
from monitor.alerts.store import AlertStore

__all__ = ["DEFAULT_PAGE", "LINKS", "STORE", "TOKEN", "WORKSPACE_PATH", "authorize", "error_response",
           "full_record", "json_body"]

STORE: Final = web.AppKey("store", AlertStore)
LINKS: Final = web.AppKey("links", AckLinks)
TOKEN: Final = web.AppKey("api_token", str)
#: Where the managers' workspace is served (``/workspace``); absent when it is not.
WORKSPACE_PATH: Final = web.AppKey("workspace_path", str)
DEFAULT_PAGE: Final = 50


def error_response(status: int, code: str, message: str, **headers: str) -> web.Response:
    """The JSON error answer ``{"error": code, "message": message}`` with ``status`` and ``headers``."""
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def authorize(request: web.Request) -> web.Response | None:
    """``None`` when the bearer token is right, else the error response."""
    expected = request.app.get(TOKEN)
    if expected is None:
        return error_response(403, "api_disabled", "no API token is configured for this monitor")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return error_response(401, "unauthorized", "a valid 'Authorization: Bearer <API token>' is required",
                      **{"WWW-Authenticate": 'Bearer realm="cardmon"'})
    return None


async def json_body(request: web.Request) -> dict[str, Any] | web.Response:
    """The JSON object body (``by`` and ``note`` strings if given), else the 400 answer."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error_response(400, "bad_request", "the body must be a JSON object")
    if not isinstance(body, dict):
        return error_response(400, "bad_request", "the body must be a JSON object")
    for key in ("by", "note"):
        if key in body and body[key] is not None and not isinstance(body[key], str):
            return error_response(400, "bad_request", f"'{key}' must be a string")
    return body


async def full_record(store: AlertStore, alert_id: str) -> dict[str, Any] | None:
    """The alert with its events, state, history, recipients and incident (``None``: no such alert)."""
    def read() -> dict[str, Any] | None:
        alert = store.get_alert(alert_id)
        if alert is None:
            return None
        return alert_record(alert, store.alert_events(alert_id), state=store.state_of(alert_id),
                            history=store.history(alert_id),
                            recipients=store.delivery_recipients(alert_id),
                            incident_id=store.incident_of(alert_id),
                            recovery=store.recovery_of(alert_id))

    return await asyncio.to_thread(read)
