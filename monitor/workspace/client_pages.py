"""The workspace's client page: one client's failures and alerts over the last 90 days.

``GET /workspace/clients/{customer_id}`` shows the client's alerts of the period that the
session may see (:func:`~monitor.workspace.access.may_see_alert`), newest first, each
failed transaction with its masked card, terminal, merchant, amount and response, and a
summary: how many failures, of which outcome classes, how much money failed per
currency. A client none of whose alerts of the period the session may see answers 404,
the same as a client that does not exist.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiohttp import web

from monitor.alerts.store import ClientHistory
from monitor.workspace.access import may_see_alert
from monitor.workspace.web import WORKSPACE, current_session, not_found, render, to_sign_in

__all__ = ["CLIENT_PERIOD", "client_page"]

#: How far back the client page looks: a quarter, the period a relationship review covers.
CLIENT_PERIOD: Final = timedelta(days=90)


async def client_page(request: web.Request) -> web.Response:
    """``GET /workspace/clients/{customer_id}``: the client's alerts and failures of the last 90 days."""
    session = await current_session(request)
    if session is None:
        return to_sign_in()
    store = request.app[WORKSPACE].store
    since = datetime.now(UTC) - CLIENT_PERIOD
    history = await asyncio.to_thread(store.client_history, request.match_info["customer_id"],
                                      since=since)
    alerts = [alert for alert in history.alerts if may_see_alert(session, alert)]
    if not alerts:
        return not_found(request, session, "There is no such client among your clients' alerts "
                                           "of the last 90 days.")
    return render(request, "client.html", {"session": session, **_summary(history, alerts),
                                           "since": since, "days": CLIENT_PERIOD.days})


def _summary(history: ClientHistory, alerts: list[Any]) -> dict[str, Any]:
    """The page's figures from the visible alerts: rows, failures, outcome classes, money per currency."""
    events = [event for alert in alerts for event in history.events.get(alert.alert_id, ())]
    money: Counter[str] = Counter()  # <currency: failed amount in its minor units>
    for event in events:
        money[event.currency] += event.amount_minor
    return {
        "client": alerts[0],  # newest: the name and tier as last recorded
        "rows": [{"alert": alert, "state": history.states[alert.alert_id],
                  "events": history.events.get(alert.alert_id, ())} for alert in alerts],
        "failures": len(events),
        "outcomes": sorted(Counter(event.outcome for event in events).items(),
                           key=lambda item: (-item[1], item[0])),
        "amounts": sorted(money.items()),
        "truncated": history.truncated,
    }
