"""Content-derived IDs: the same content always gives the same ID, on any instance.

Alerts (``al-``), digests (``dg-``), rate-cap summaries (``sm-``), incidents (``in-``)
and incident notices (``ic-``) are named by what they are about, so recording or
claiming one twice (a redelivered batch, two instances) finds the same row. Every
kind uses one recipe, :func:`content_id`; the IDs already stored depend on it, so it
must never change (``tests/test_ids.py`` pins known IDs).

Base32 (``a-z2-7``), never hex: an ID must never hold a 13–19 digit run that the PAN
scrubbers of the sinks would take for a card number and mask.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Final

__all__ = ["content_id"]

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
