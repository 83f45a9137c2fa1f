"""The API's alert endpoints: list, read, acknowledge (bearer or signed link), resolve, re-send."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Final

from aiohttp import web

from monitor.alerts.export import alert_record, history_record
from monitor.alerts.states import (
    ALERT_STATES,
    MAX_NOTE_CHARS,
    AlertNotFoundError,
    StateConflictError,
    Transition,
)
from monitor.api.links import ack_by_link
from monitor.api.requests import (
    DEFAULT_PAGE,
    STORE,
    authorize,
    error_response,
    full_record,
    json_body,
)

__all__ = ["ack", "get_alert", "list_alerts", "resend", "resolve"]

# Query values of a true/false filter; "" (absent) means no filter.
_BOOLEANS: Final[dict[str, bool | None]] = {"": None, "true": True, "1": True, "yes": True,
                                            "false": False, "0": False, "no": False}


def _transition_json(result: Transition) -> dict[str, Any]:
    return {
        "alert_id": result.alert_id,
        "state": result.state,
        "changed": result.changed,
        "entry": history_record(result.entry) if result.entry is not None else None,
    }


async def list_alerts(request: web.Request) -> web.Response:
    """``GET /alerts``: a page of alerts, newest first, filtered by the query."""
    if (denied := authorize(request)) is not None:
        return denied
    query = request.query
    state = query.get("state") or None
    if state is not None and state not in ALERT_STATES:
        return error_response(400, "bad_request", f"state must be one of {', '.join(ALERT_STATES)}")
    since = None
    if query.get("since"):
        try:
            since = datetime.fromisoformat(query["since"])
        except ValueError:
            since = None
        if since is None or since.tzinfo is None:
            return error_response(400, "bad_request",
                          "since must be an RFC 3339 time with an offset, e.g. 2024-05-06T12:00:00Z")
    try:
        limit = int(query.get("limit", DEFAULT_PAGE))
    except ValueError:
        return error_response(400, "bad_request", "limit must be an integer")
    flags: dict[str, bool | None] = {}
    for name in ("late", "unroutable"):
        given = query.get(name, "").lower()
        if given not in _BOOLEANS:
            return error_response(400, "bad_request", f"{name} must be true or false")
        flags[name] = _BOOLEANS[given]
    store = request.app[STORE]
    try:
        page = await asyncio.to_thread(
            store.find_alerts, state=state, manager_id=query.get("manager_id") or None,
            since=since, limit=limit, cursor=query.get("cursor") or None, **flags,
        )
    except ValueError as error:
        return error_response(400, "bad_request", str(error))
    recoveries = await asyncio.to_thread(store.recoveries_of, [a.alert_id for a in page.alerts])
    alerts = []
    for alert in page.alerts:
        record = alert_record(alert, [], state=page.states[alert.alert_id],
                              recovery=recoveries.get(alert.alert_id))
        del record["events"], record["history"]
        alerts.append(record)
    return web.json_response({"alerts": alerts, "next_cursor": page.next_cursor})


async def get_alert(request: web.Request) -> web.Response:
    """``GET /alerts/{id}``: the alert with its state, events, deliveries and history."""
    if (denied := authorize(request)) is not None:
        return denied
    alert_id = request.match_info["alert_id"]
    record = await full_record(request.app[STORE], alert_id)
    if record is None:
        return error_response(404, "not_found", f"no alert {alert_id}")
    return web.json_response(record)


async def ack(request: web.Request) -> web.Response:
    """``POST /alerts/{id}/ack``: acknowledge, by bearer token (JSON) or by signed link (``?token=``)."""
    if "token" in request.query:
        return await ack_by_link(request)
    if (denied := authorize(request)) is not None:
        return denied
    body = await json_body(request)
    if isinstance(body, web.Response):
        return body
    if not body.get("by"):
        return error_response(400, "bad_request", "'by' (who acknowledges) is required")
    return await _apply(request, "ack", by=body["by"], note=body.get("note"), via="api")


async def resolve(request: web.Request) -> web.Response:
    """``POST /alerts/{id}/resolve``: resolve an acknowledged alert with a note."""
    if (denied := authorize(request)) is not None:
        return denied
    body = await json_body(request)
    if isinstance(body, web.Response):
        return body
    outcome = body.get("outcome")
    if not body.get("by") or (outcome is None and not (body.get("note") or "").strip()):
        return error_response(400, "bad_request",
                              "'by' and a 'note' or an 'outcome' saying what was done are required")
    if outcome is not None and not isinstance(outcome, str):
        return error_response(400, "bad_request", "'outcome' must be a string")
    return await _apply(request, "resolve", by=body["by"], note=body.get("note"), via="api",
                        outcome=outcome)


async def resend(request: web.Request) -> web.Response:
    """``POST /alerts/{id}/resend``: put the alert's failed deliveries back in the outbox."""
    if (denied := authorize(request)) is not None:
        return denied
    body = await json_body(request)
    if isinstance(body, web.Response):
        return body
    if not body.get("by"):
        return error_response(400, "bad_request", "'by' (who re-sends) is required")
    alert_id = request.match_info["alert_id"]
    try:
        result = await asyncio.to_thread(request.app[STORE].resend, alert_id, by=body["by"], via="api")
    except AlertNotFoundError:
        return error_response(404, "not_found", f"no alert {alert_id}")
    except ValueError as error:
        return error_response(400, "bad_request", str(error))
    return web.json_response({"alert_id": alert_id, "deliveries": result.deliveries,
                              "alert_ids": list(result.alert_ids)})


async def _apply(request: web.Request, what: str, *, by: str, note: str | None,
                 via: str, outcome: str | None = None) -> web.Response:
    if isinstance(note, str) and len(note) > MAX_NOTE_CHARS:
        return error_response(400, "bad_request", f"a note has at most {MAX_NOTE_CHARS} characters")
    store = request.app[STORE]
    alert_id = request.match_info["alert_id"]
    try:
        if what == "ack":
            result = await asyncio.to_thread(store.acknowledge, alert_id, by=by, via=via, note=note)
        else:
            result = await asyncio.to_thread(store.resolve, alert_id, by=by, via=via,
                                             note=note or "", outcome=outcome)
    except AlertNotFoundError:
        return error_response(404, "not_found", f"no alert {alert_id}")
    except StateConflictError as error:
        return error_response(409, "conflict", str(error))
    except ValueError as error:
        return error_response(400, "bad_request", str(error))
    return web.json_response(_transition_json(result))
