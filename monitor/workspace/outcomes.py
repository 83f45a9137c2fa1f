"""What a manager did about an alert when resolving it: a fixed vocabulary, kept in the resolution note.

The store has no outcome column yet (a schema change is planned), so the workspace writes
the outcome as the first line of the resolution's history note, in a fixed form a program
can read back::

    outcome: called_client
    Spoke to her at 10:40; the ATM was out of service, she will retry tomorrow.

:func:`resolution_note` writes that text and :func:`outcome_of` reads it back (``None``
for a note written some other way, e.g. through the API or the CLI).
"""

from __future__ import annotations

from typing import Final

__all__ = ["OUTCOME_PREFIX", "RESOLUTION_OUTCOMES", "outcome_of", "resolution_note"]

#: The resolution outcomes a manager chooses from, with the label the page shows.
RESOLUTION_OUTCOMES: Final[dict[str, str]] = {
    "called_client": "Called the client",
    "reversal_or_refund_arranged": "Arranged a reversal or refund",
    "card_replaced": "Replaced the card",
    "terminal_reported_to_operations": "Reported the terminal to operations",
    "client_unreachable": "Could not reach the client",
    "no_action_needed": "No action needed",
}
#: How the note's first line starts.
OUTCOME_PREFIX: Final = "outcome: "


def resolution_note(outcome: str, note: str | None) -> str:
    """The history note of a resolution: the outcome line, then the manager's note if any.

    Args:
        outcome: one of :data:`RESOLUTION_OUTCOMES`.
        note: free text (may be empty or ``None``).

    Raises:
        ValueError: ``outcome`` is not in the vocabulary.
    """
    if outcome not in RESOLUTION_OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(RESOLUTION_OUTCOMES)}")
    text = (note or "").strip()
    return f"{OUTCOME_PREFIX}{outcome}\n{text}" if text else f"{OUTCOME_PREFIX}{outcome}"


def outcome_of(note: str | None) -> str | None:
    """The outcome a resolution note records (one of :data:`RESOLUTION_OUTCOMES`), else ``None``."""
    if not note or not note.startswith(OUTCOME_PREFIX):
        return None
    first = note.split("\n", 1)[0][len(OUTCOME_PREFIX):].strip()
    return first if first in RESOLUTION_OUTCOMES else None
