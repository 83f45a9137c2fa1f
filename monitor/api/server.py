"""The API application and its server: routes, the store-failure middleware, start and close."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from monitor.alerts.delivery.links import AckLinks
from monitor.alerts.store import AlertStore
from monitor.alerts.store.db import DATABASE_ERRORS, is_transient
from monitor.api.alerts import ack, get_alert, list_alerts, resend, resolve
from monitor.api.incidents import get_incident, list_incidents
from monitor.api.links import ack_page
from monitor.api.requests import LINKS, STORE, TOKEN, error_response
from monitor.api.terminals import IMPACT_CLASSES, terminal_impact
from monitor.workspace import Workspace, build_workspace

__all__ = ["ApiServer", "build_api", "start_api"]

log = logging.getLogger("monitor.api")

# Seconds a caller is asked to wait when the store is unavailable (Retry-After).
_RETRY_AFTER_SECONDS: Final = 5
# Request bodies are a name and a note: 64 KiB is plenty and bounds what a caller can send.
_MAX_BODY_BYTES: Final = 64 * 1024


def build_api(
    store: AlertStore, *, api_token: str | None = None, links: AckLinks | None = None,
    workspace: Workspace | None = None, impact_classes: Sequence[str] | None = None,
) -> web.Application:
    """Return the API application.

    Args:
        store: the alert store (its calls run in a thread).
        api_token: the bearer token of JSON callers; ``None`` refuses them all (403).
        links: the ack link verifier; ``None`` refuses every link (403).
        workspace: the managers' workspace, served under ``/workspace``; ``None``: not served.
        impact_classes: the outcome classes that are a terminal's own, for
            ``/terminals/impact`` (``rules/health.yaml`` ``aggregate.classes``; ``None``:
            technical, terminal, card).
    """
    app = web.Application(client_max_size=_MAX_BODY_BYTES, middlewares=[_store_errors])
    app[STORE] = store
    if api_token:
        app[TOKEN] = api_token
    if links is not None:
        app[LINKS] = links
    if impact_classes is not None:
        app[IMPACT_CLASSES] = tuple(impact_classes)
    app.router.add_get("/alerts", list_alerts)
    app.router.add_get("/alerts/{alert_id}", get_alert)
    app.router.add_get("/alerts/{alert_id}/ack", ack_page)
    app.router.add_post("/alerts/{alert_id}/ack", ack)
    app.router.add_post("/alerts/{alert_id}/resolve", resolve)
    app.router.add_post("/alerts/{alert_id}/resend", resend)
    app.router.add_get("/incidents", list_incidents)
    app.router.add_get("/incidents/{incident_id}", get_incident)
    app.router.add_get("/terminals/impact", terminal_impact)
    if workspace is not None:
        app.add_subapp("/workspace", build_workspace(workspace))
    return app


@dataclass(frozen=True, slots=True)
class ApiServer:
    """A running API server: ``url`` is its base URL; ``await close()`` stops it."""

    url: str
    runner: web.AppRunner

    async def close(self) -> None:
        """Stop listening and finish in-flight requests."""
        await self.runner.cleanup()


async def start_api(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> ApiServer:
    """Serve ``app`` on ``host:port`` (0: any free port) until ``close``.

    Raises:
        OSError: the address is taken or not ours.
    """
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    return ApiServer(url=f"http://{bound_host}:{bound_port}", runner=runner)


@web.middleware
async def _store_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """A store failure is a JSON 503 (transient) or 500, never a traceback or a secret."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except DATABASE_ERRORS as error:
        # The route, never the path or query string: a link's token is in them.
        route = request.match_info.route.resource
        where = route.canonical if route is not None else "?"
        if is_transient(error):
            log.warning("API %s %s: the alert store is unavailable (%s)", request.method,
                        where, type(error).__name__)
            return error_response(503, "store_unavailable",
                          "the alert store is unavailable; nothing was changed, try again shortly",
                          **{"Retry-After": str(_RETRY_AFTER_SECONDS)})
        log.error("API %s %s: the alert store failed (%s, SQLSTATE %s)", request.method,
                  where, type(error).__name__, getattr(error, "sqlstate", None))
        return error_response(500, "store_error", "the alert store failed; see the monitor's log")
