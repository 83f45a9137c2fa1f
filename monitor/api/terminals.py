"""The API's repair-priority endpoint: the terminals that hurt VIP clients most."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from monitor.alerts.store import TerminalImpact
from monitor.api.requests import STORE, authorize, error_response
from monitor.metrics import IMPACT_WINDOWS

__all__ = ["IMPACT_CLASSES", "terminal_impact"]

#: The outcome classes that are a terminal's own (``rules/health.yaml`` ``aggregate.classes``).
IMPACT_CLASSES: Final = web.AppKey("impact_classes", tuple)
_DEFAULT_CLASSES: Final = ("technical", "terminal", "card")


def _impact_json(rank: int, impact: TerminalImpact) -> dict[str, Any]:
    return {
        "rank": rank, "terminal_id": impact.terminal_id, "channel": impact.channel,
        "merchant_id": impact.merchant_id, "clients": impact.clients, "failures": impact.failures,
        "managers": impact.managers, "outcomes": dict(impact.outcomes),
        "last_failure_at": impact.last_failure_at.isoformat(),
    }


async def terminal_impact(request: web.Request) -> web.Response:
    """``GET /terminals/impact?window=24h|7d&limit=20``: terminals ranked by VIP impact until now.

    Ranked by distinct VIP clients who failed there, then failures, then managers; the
    terminal's own failure classes only, issuer and network outages left out. Answers
    ``{"window", "since", "until", "classes", "terminals": [...]}``; 400 for a bad
    ``window`` or ``limit``.
    """
    if (denied := authorize(request)) is not None:
        return denied
    window = request.query.get("window", "24h")
    if window not in IMPACT_WINDOWS:
        return error_response(400, "bad_request", f"window must be one of {', '.join(IMPACT_WINDOWS)}")
    try:
        limit = int(request.query.get("limit", 20))
        if not 1 <= limit <= 500:
            raise ValueError
    except ValueError:
        return error_response(400, "bad_request", "limit must be an integer from 1 to 500")
    classes = request.app.get(IMPACT_CLASSES, _DEFAULT_CLASSES)
    until = datetime.now(UTC)
    since = until - IMPACT_WINDOWS[window]
    ranked = await asyncio.to_thread(request.app[STORE].terminal_impact, since=since, until=until,
                                     classes=classes, limit=limit)
    return web.json_response({
        "window": window, "since": since.isoformat(), "until": until.isoformat(),
        "classes": list(classes),
        "terminals": [_impact_json(rank, impact) for rank, impact in enumerate(ranked, start=1)]})
