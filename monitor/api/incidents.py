"""The API's incident endpoints: storm-control incidents, and one with its VIP alerts."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from monitor.api.requests import DEFAULT_PAGE, STORE, authorize, error_response
from monitor.incidents import Incident

__all__ = ["get_incident", "list_incidents"]


def _incident_json(incident: Incident) -> dict[str, Any]:
    return {
        "incident_id": incident.incident_id, "scope": incident.scope,
        "scope_key": incident.scope_key, "title": incident.describe(),
        "started_at": incident.started_at.isoformat(),
        "last_failure_at": incident.last_failure_at.isoformat(),
        "ended_at": incident.ended_at.isoformat() if incident.ended_at else None,
        "open": incident.is_open, "failures": incident.failures, "cards": incident.cards,
        "terminals": incident.terminals, "relapses": incident.relapses,
        "flapping": incident.flapping, "note": incident.note,
        "alert_count": incident.alert_count, "manager_count": incident.manager_count,
        "parent_id": incident.parent_id,
    }


async def list_incidents(request: web.Request) -> web.Response:
    """``GET /incidents``: storm-control incidents, latest start first."""
    if (denied := authorize(request)) is not None:
        return denied
    try:
        limit = int(request.query.get("limit", DEFAULT_PAGE))
        if not 1 <= limit <= 500:
            raise ValueError
    except ValueError:
        return error_response(400, "bad_request", "limit must be an integer from 1 to 500")
    open_only = request.query.get("open", "").lower() in ("1", "true", "yes")
    top_level = request.query.get("top_level", "").lower() in ("1", "true", "yes")
    incidents = await asyncio.to_thread(request.app[STORE].list_incidents, open_only=open_only,
                                        top_level=top_level, limit=limit)
    return web.json_response({"incidents": [_incident_json(i) for i in incidents]})


async def get_incident(request: web.Request) -> web.Response:
    """``GET /incidents/{id}``: the incident with its VIP alerts."""
    if (denied := authorize(request)) is not None:
        return denied
    store = request.app[STORE]
    incident_id = request.match_info["incident_id"]

    def read() -> dict[str, Any] | None:
        incident = store.get_incident(incident_id)
        if incident is None:
            return None
        record = _incident_json(incident)
        record["alerts"] = [
            {"alert_id": alert.alert_id, "customer_id": alert.customer_id,
             "customer_name": alert.customer_name, "tier": alert.tier,
             "manager_id": alert.manager.manager_id, "severity": alert.severity, "state": state,
             "failures": alert.event_count, "linked_at": linked_at.isoformat()}
            for alert, state, linked_at in store.incident_alerts(incident_id)]
        return record

    record = await asyncio.to_thread(read)
    if record is None:
        return error_response(404, "not_found", f"no incident {incident_id}")
    return web.json_response(record)
