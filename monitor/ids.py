"""Content-derived IDs: the same content always gives the same ID, on any instance.

Alerts (``al-``), digests (``dg-``), rate-cap summaries (``sm-``), incidents (``in-``)
and incident notices (``ic-``) are named by what they are about, so recording or
claiming one twice (a redelivered batch, two instances) finds the same row. A
recovery follow-up (``rf-``) is named by its alert: ``rf-`` + the alert ID's 20
characters (one follow-up per alert; the outbox's parent check maps it back). Every
kind uses one recipe, :func:`content_id`; the IDs already stored depend on it, so it
must never change (``tests/test_ids.py`` pins known IDs).

Base32 (``a-z2-7``), never hex: an ID must never hold a 13–19 digit run that the PAN
scrubbers of the sinks would take for a card number and mask.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, date, datetime
from typing import Final

__all__ = [
    "alert_id_for",
    "content_id",
    "digest_id_for",
    "follow_up_alert_id",
    "follow_up_id_for",
    "incident_id_for",
    "is_digest_id",
    "is_follow_up_id",
    "is_notice_id",
    "is_summary_id",
    "notice_id_for",
    "summary_id_for",
]

# Characters of base32 kept: 100 bits of SHA-256, collisions out of reach for our volumes.
_LENGTH: Final = 20


def content_id(prefix: str, *parts: str) -> str:
    """Return ``prefix + "-"`` + 20 lower-case base32 characters of SHA-256 of the parts.

    Args:
        prefix: the kind of thing named, e.g. ``"al"`` (alert) or ``"dg"`` (digest).
        parts: the content, joined with ``"|"`` and UTF-8 encoded before hashing; a
            caller passes its own namespace word first where it has one
            (``"digest"``, ``"summary"``...) and times as ISO 8601 text.

    Returns:
        e.g. ``"al-flzuxctczjg7gpdrl4gr"`` (23 characters for a two-letter prefix).
    """
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return f"{prefix}-" + base64.b32encode(digest).decode("ascii")[:_LENGTH].lower()


def alert_id_for(customer_id: str, window_start: datetime) -> str:
    """Return the content-derived alert ID: ``"al-"`` + 20 base32 characters of SHA-256.

    Base32 (``a-z2-7``), not hex: an ID must never hold a 13–19 digit run that the
    PAN scrubbers of the sinks would take for a card number and mask.
    """
    return content_id("al", customer_id, window_start.astimezone(UTC).isoformat())


def digest_id_for(manager_id: str, local_date: date) -> str:
    """Return the ID of a manager's digest of one local day: ``"dg-"`` + 20 base32 characters."""
    return content_id("dg", "digest", manager_id, local_date.isoformat())


def is_digest_id(alert_id: str) -> bool:
    """Whether an outbox row's ``alert_id`` names a digest rather than an alert."""
    return alert_id.startswith("dg-")


def summary_id_for(manager_id: str, first_capped_at: datetime) -> str:
    """Return the ID of a manager's summary that starts with the alert capped at that time."""
    return content_id("sm", "summary", manager_id, first_capped_at.isoformat())


def is_summary_id(alert_id: str) -> bool:
    """Whether an outbox row's ``alert_id`` names a rate-cap summary."""
    return alert_id.startswith("sm-")


def incident_id_for(scope: str, scope_key: str, started_at: datetime) -> str:
    """Return the incident ID for an outage of ``scope_key`` that started at ``started_at``."""
    return content_id("in", "incident", scope, scope_key, started_at.astimezone(UTC).isoformat())


def notice_id_for(incident_id: str, manager_id: str, seq: int) -> str:
    """Return the ID of the ``seq``-th message (1-based) about an incident to one manager."""
    return content_id("ic", "notice", incident_id, manager_id, str(seq))


def is_notice_id(alert_id: str) -> bool:
    """Whether an outbox row's ``alert_id`` names an incident notice."""
    return alert_id.startswith("ic-")


def follow_up_id_for(alert_id: str) -> str:
    """Return the ID of an alert's recovery follow-up: ``"rf-"`` + the alert ID's 20 characters.

    Raises:
        ValueError: ``alert_id`` is not an alert ID (``al-...``).
    """
    if not alert_id.startswith("al-"):
        raise ValueError(f"not an alert ID: {alert_id!r}")
    return "rf-" + alert_id[3:]


def follow_up_alert_id(follow_up_id: str) -> str:
    """Return the alert ID a recovery follow-up's ID names (inverse of :func:`follow_up_id_for`)."""
    if not is_follow_up_id(follow_up_id):
        raise ValueError(f"not a follow-up ID: {follow_up_id!r}")
    return "al-" + follow_up_id[3:]


def is_follow_up_id(alert_id: str) -> bool:
    """Whether an outbox row's ``alert_id`` names a recovery follow-up (``rf-...``)."""
    return alert_id.startswith("rf-")
