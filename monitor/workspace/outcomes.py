"""What a manager did about an alert when resolving it: the page's labels for the store's vocabulary.

The vocabulary is :data:`monitor.alerts.states.RESOLUTION_OUTCOMES` (the store records
one in ``alert_history.outcome``, schema 7); this module gives each the label the
workspace shows (English msgids: templates show them through ``_()``).
"""

from __future__ import annotations

from typing import Final

from monitor.alerts.states import RESOLUTION_OUTCOMES
from monitor.i18n import N_

__all__ = ["OUTCOME_LABELS"]

#: Each resolution outcome with the label the page shows, in the vocabulary's order.
OUTCOME_LABELS: Final[dict[str, str]] = dict(zip(RESOLUTION_OUTCOMES, (
    N_("Called the client"),
    N_("Arranged a reversal or refund"),
    N_("Replaced the card"),
    N_("Reported the terminal to operations"),
    N_("Could not reach the client"),
    N_("No action needed"),
), strict=True))
