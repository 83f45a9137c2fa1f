"""Plain words for the report's codes (outcome classes, outcomes, recovery) and durations.

The report is read by a bank's head of cards, not by an engineer: every code the store
keeps (``technical``, ``called_client``, ``watching``) is shown in words, with the code
beside it where a reader may want to trace it. English only (``docs/report.md``).
"""

from __future__ import annotations

from typing import Final

__all__ = ["CLASS_WORDS", "OUTCOME_WORDS", "RECOVERY_WORDS", "duration", "words"]

#: Outcome class → what failed, in a banker's words.
CLASS_WORDS: Final[dict[str, str]] = {
    "technical": "Bank systems (no answer, host down)",
    "terminal": "Terminal (ATM or card reader fault)",
    "card": "Card (chip, expired, blocked)",
    "customer": "Client's account (funds, limits, PIN)",
    "fraud": "Fraud rule",
    "unknown": "Unrecognised response",
    "approved": "Approved",
}
#: Resolution outcome (and the two buckets beside the vocabulary) → what the manager did.
OUTCOME_WORDS: Final[dict[str, str]] = {
    "called_client": "Called the client",
    "reversal_or_refund_arranged": "Reversal or refund arranged",
    "card_replaced": "Card replaced",
    "terminal_reported_to_operations": "Terminal reported to operations",
    "client_unreachable": "Client unreachable",
    "no_action_needed": "No action needed",
    "note_only": "Resolved with a note only",
    "not_resolved": "Not resolved yet",
}
#: Recovery bucket → what it means for the client.
RECOVERY_WORDS: Final[dict[str, str]] = {
    "recovered": "Recovered (completed the same kind of transaction soon after)",
    "abandoned": "Abandoned (no such transaction within the watch window)",
    "pending": "Still being watched",
    "not_watched": "Not watched (no recovery record)",
}


def words(table: dict[str, str], code: str) -> str:
    """The plain words for ``code`` in ``table``, or the code itself when it has none."""
    return table.get(code, code)


def duration(seconds: float | None) -> str:
    """A readable duration: ``"45 s"``, ``"12 min"``, ``"3 h 05 min"``, ``"2 d 4 h"``."""
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 60:
        return f"{minutes:.1f} min" if minutes < 10 else f"{minutes:.0f} min"
    hours, rest = divmod(round(minutes), 60)
    if hours < 48:
        return f"{hours} h {rest:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
