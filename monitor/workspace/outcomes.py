"""What a manager did about an alert when resolving it: the page's labels for the store's vocabulary.

The vocabulary is :data:`monitor.alerts.states.RESOLUTION_OUTCOMES` (the store records
one in ``alert_history.outcome``, schema 7); this module gives each the label the
workspace shows.
"""

from __future__ import annotations

from typing import Final

from monitor.alerts.states import RESOLUTION_OUTCOMES

__all__ = ["OUTCOME_LABELS"]

#: Each resolution outcome with the label the page shows, in the vocabulary's order.
OUTCOME_LABELS: Final[dict[str, str]] = dict(zip(RESOLUTION_OUTCOMES, (
    "Called the client",
    "Arranged a reversal or refund",
    "Replaced the card",
    "Reported the terminal to operations",
    "Could not reach the client",
    "No action needed",
), strict=True))
