"""Who may see what in the workspace: one place that every page and action asks.

Anything a session may not see answers 404, the same as what does not exist, so a
guessed alert ID or a page of another role tells nothing. The rules, by role
(:mod:`monitor.workspace.roles`):

=============  ==========================================================================
role           sees (and acts on)
=============  ==========================================================================
manager        their own clients' alerts (list, alert page, acknowledge, resolve)
team lead      their own and their team's managers' clients' alerts, and the team page
operations     incidents and terminals; no alert (alerts name clients); client names on
               the incident page only when ``workspace.operations_see_client_names``
=============  ==========================================================================

A session's roles are looked up at every request
(:func:`~monitor.workspace.web.current_session`), so a change of the settings or the
registry takes effect at the next request; a session without roles sees nothing.
"""

from __future__ import annotations

from typing import Final, Literal

from monitor.domain import Alert
from monitor.workspace.sessions import Session

__all__ = [
    "PAGES",
    "Page",
    "allowed_pages",
    "home_page",
    "may_see_alert",
    "may_see_client_names",
    "may_see_page",
    "visible_managers",
]

#: The workspace's pages (a role's nav shows the ones it has): ``alerts`` covers the list,
#: an alert's page and its actions.
Page = Literal["alerts", "team", "incidents", "terminals"]
PAGES: Final[tuple[Page, ...]] = ("alerts", "team", "incidents", "terminals")
_PAGES_OF: Final[dict[str, frozenset[Page]]] = {
    "manager": frozenset({"alerts"}),
    "team_lead": frozenset({"alerts", "team"}),
    "operations": frozenset({"incidents", "terminals"}),
}
_HOME: Final[dict[Page, str]] = {"alerts": "/workspace/alerts", "incidents": "/workspace/incidents",
                                  "team": "/workspace/team", "terminals": "/workspace/terminals"}


def visible_managers(session: Session) -> frozenset[str]:
    """The manager IDs whose clients' alerts the session sees: its own (a manager), its team's (a lead)."""
    seen: set[str] = set()
    if "manager" in session.roles:
        seen.add(session.manager_id)
    if "team_lead" in session.roles:
        seen |= session.team
    return frozenset(seen)


def may_see_alert(session: Session, alert: Alert) -> bool:
    """Whether the session's person may see (and act on) ``alert``: one of their (team's) clients'."""
    return alert.manager.manager_id in visible_managers(session)


def allowed_pages(session: Session | None) -> frozenset[Page]:
    """The pages the session's roles have (none without a session)."""
    if session is None:
        return frozenset()
    return frozenset().union(*(_PAGES_OF.get(role, frozenset()) for role in session.roles))


def may_see_page(session: Session, page: Page) -> bool:
    """Whether the session's roles have ``page``."""
    return page in allowed_pages(session)


def home_page(roles: frozenset[str]) -> str:
    """Where a person with ``roles`` lands after signing in (their first page)."""
    pages = frozenset().union(*(_PAGES_OF.get(role, frozenset()) for role in roles))
    return next((_HOME[page] for page in PAGES if page in pages), "/workspace/sign-in")


def may_see_client_names(session: Session, *, operations_see_client_names: bool) -> bool:
    """Whether an operations page may name the clients an incident hit.

    Operations see them only when configured; a manager or lead never reaches these pages.
    """
    return "operations" in session.roles and operations_see_client_names
