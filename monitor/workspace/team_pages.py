"""The team lead's page: who of the team has alerts waiting, and how fast the team acknowledges.

``GET /workspace/team`` shows, for the lead and each manager of their team
(``workspace.teams``), how many alerts nobody has acknowledged yet, how long the oldest
of them has waited, and the median time from an alert's recording to its first
acknowledgement over the last :data:`TEAM_WINDOW` (whoever acknowledged: the manager,
a backup, the lead; through any channel). Each row links to that manager's alerts.
A session without the team-lead role gets 404 (:func:`~monitor.workspace.access.may_see_page`).
"""

from __future__ import annotations

import asyncio
import statistics
from datetime import UTC, datetime, timedelta
from typing import Final

from aiohttp import web

from monitor.workspace.access import may_see_page, visible_managers
from monitor.workspace.web import WORKSPACE, current_session, not_found, render, to_sign_in

__all__ = ["TEAM_WINDOW", "team_page"]

#: How far back the median time to acknowledge looks.
TEAM_WINDOW: Final = timedelta(days=7)


async def team_page(request: web.Request) -> web.Response:
    """``GET /workspace/team``: per manager of the lead's team, alerts waiting and time to acknowledge."""
    session = await current_session(request)
    if session is None:
        return to_sign_in()
    if not may_see_page(session, "team"):
        return not_found(request, session, "There is no such page among yours.")
    workspace = request.app[WORKSPACE]
    people = workspace.mailer.people
    now = datetime.now(UTC)
    managers = visible_managers(session)
    counts = await asyncio.to_thread(workspace.store.acknowledgement_counts, sorted(managers),
                                     since=now - TEAM_WINDOW)
    rows = []
    for manager_id in sorted(managers, key=lambda m: (m != session.manager_id, people.name_of(m) or m, m)):
        count = counts[manager_id]
        oldest = count.oldest_unacknowledged_at
        rows.append({
            "manager_id": manager_id, "name": people.name_of(manager_id),
            "own": manager_id == session.manager_id, "unacknowledged": count.unacknowledged,
            "oldest_seconds": None if oldest is None else max(0, int((now - oldest).total_seconds())),
            "acknowledged": len(count.acknowledge_seconds),
            "median_seconds": (int(statistics.median(count.acknowledge_seconds))
                               if count.acknowledge_seconds else None)})
    return render(request, "team.html", {"session": session, "rows": rows,
                                          "window_days": TEAM_WINDOW.days})
