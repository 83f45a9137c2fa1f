"""The acknowledgement link: ``GET`` shows the alert and a button, ``POST`` acknowledges (HTML pages).

A GET never acknowledges, so a mail scanner that prefetches links changes nothing. The
link's token is verified for this alert (signed, expiring, bound to the manager it was
sent to); a refused one answers a 403 page that says what to do instead.

When the managers' workspace is served, every page about the alert (before and after
acknowledging) also offers "Open in your workspace": ``/workspace/alerts/{id}``, which
asks for a sign-in first when there is no session and comes back to the alert after it.
The link's token never opens a session: it vouches for one acknowledgement only.
"""

from __future__ import annotations

import asyncio
from html import escape
from typing import Any, Final
from urllib.parse import quote

from aiohttp import web

from monitor.alerts.delivery.links import InvalidTokenError
from monitor.alerts.states import AlertNotFoundError
from monitor.api.requests import LINKS, STORE, WORKSPACE_PATH, full_record

__all__ = ["ack_by_link", "ack_page"]

# A link page must not leak its token (Referer), be cached, or be framed.
_PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'",
}


def _page(status: int, title: str, body: str) -> web.Response:
    html = (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<meta name=\"robots\" content=\"noindex\"><title>{escape(title)} · cardmon</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;"
        "padding:0 1rem}dt{font-weight:600}textarea{width:100%}button{font-size:1.1rem;"
        "padding:.5rem 1.5rem}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(status=status, text=html, content_type="text/html",
                        headers=_PAGE_HEADERS)


def _check_link(request: web.Request) -> tuple[str, str] | web.Response:
    """``(alert_id, manager_id)`` of a valid link, else the 403 page."""
    alert_id = request.match_info["alert_id"]
    links = request.app.get(LINKS)
    if links is None:
        return _page(403, "Link refused", "<p>Acknowledgement links are not enabled on this "
                     "monitor. Use <code>cardmon alerts ack</code> or the API.</p>")
    try:
        claim = links.verify(request.query.get("token", ""), alert_id)
    except InvalidTokenError as error:
        return _page(403, "Link refused",
                     f"<p>{escape(str(error).capitalize())}. Nothing was changed.</p>"
                     "<p>Open the alert from a newer message, or acknowledge it with "
                     "<code>cardmon alerts ack</code> or the API.</p>")
    return alert_id, claim.manager_id


def _workspace_link(request: web.Request, alert_id: str) -> str:
    """The "Open in your workspace" paragraph when the workspace is served, else ``""``."""
    mounted = request.app.get(WORKSPACE_PATH)
    if mounted is None:
        return ""
    href = escape(f"{mounted}/alerts/{quote(alert_id, safe='')}", quote=True)
    return f"<p><a href=\"{href}\">Open in your workspace</a></p>"


def _summary(record: dict[str, Any]) -> str:
    rows = [("Alert", record["alert_id"]), ("Client", f"{record['customer_name']} ({record['tier']})"),
            ("Severity", record["severity"]), ("Failed transactions", str(record["event_count"])),
            ("State", record["state"])]
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows) + "</dl>"


async def ack_page(request: web.Request) -> web.Response:
    """``GET /alerts/{id}/ack?token=``: the alert and a button that POSTs; never acknowledges."""
    checked = _check_link(request)
    if isinstance(checked, web.Response):
        return checked
    alert_id, manager_id = checked
    record = await full_record(request.app[STORE], alert_id)
    if record is None:
        return _page(404, "Unknown alert", f"<p>There is no alert {escape(alert_id)}.</p>")
    if record["state"] in ("acknowledged", "resolved"):
        done = next((h for h in reversed(record["history"]) if h["action"] == "acknowledged"), None)
        who = f" by {escape(done['by'])} at {escape(done['at'])}" if done else ""
        return _page(200, "Already acknowledged",
                     f"{_summary(record)}<p>This alert was already acknowledged{who}.</p>"
                     + _workspace_link(request, alert_id))
    action = escape(request.path_qs, quote=True)
    form = (f"<form method=\"post\" action=\"{action}\">"
            "<p><label for=\"note\">Note (optional)</label><br>"
            "<textarea id=\"note\" name=\"note\" rows=\"3\" maxlength=\"2000\"></textarea></p>"
            f"<p><button type=\"submit\">Acknowledge as {escape(manager_id)}</button></p></form>")
    return _page(200, "Acknowledge this alert?",
                 _summary(record) + form + _workspace_link(request, alert_id))


async def ack_by_link(request: web.Request) -> web.Response:
    """``POST /alerts/{id}/ack?token=``: acknowledge as the manager the link was sent to."""
    checked = _check_link(request)
    if isinstance(checked, web.Response):
        return checked
    alert_id, manager_id = checked
    form = await request.post()
    note = form.get("note")
    try:
        result = await asyncio.to_thread(
            request.app[STORE].acknowledge, alert_id, by=manager_id, via="link",
            note=note if isinstance(note, str) else None,
        )
    except AlertNotFoundError:
        return _page(404, "Unknown alert", f"<p>There is no alert {escape(alert_id)}.</p>")
    if not result.changed:
        return _page(200, "Already acknowledged",
                     f"<p>Alert {escape(alert_id)} was already {escape(result.state)}. "
                     "Nothing was changed.</p>" + _workspace_link(request, alert_id))
    return _page(200, "Acknowledged",
                 f"<p>Alert {escape(alert_id)} is acknowledged by {escape(manager_id)}. "
                 "Its escalation has stopped.</p>" + _workspace_link(request, alert_id))
