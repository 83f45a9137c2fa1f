"""Who may see what in the workspace: one place that every page and action asks.

Anything a session may not see answers 404, the same as what does not exist, so a
guessed alert ID tells nothing. Today a session sees its own manager's clients' alerts.
"""

from __future__ import annotations

from monitor.domain import Alert
from monitor.workspace.sessions import Session

__all__ = ["may_see_alert"]


def may_see_alert(session: Session, alert: Alert) -> bool:
    """Whether the session's person may see (and act on) ``alert``: it is one of their clients'."""
    return alert.manager.manager_id == session.manager_id
