"""The per-manager rate cap: past a number of messages, the excess goes out as one summary.

A relationship manager who gets more than ``max_messages`` alert messages within
``per_seconds`` stops reading them. So, step by step:

1. when an alert is recorded (:meth:`~monitor.alerts.store.AlertStore.record`), the
   store counts the messages its manager got in the last ``per_seconds`` (alerts
   sent on their own and incident notices; messages folded into an incident do not
   count); at the cap, the alert gets no message of its own: it is *capped*
   (``alerts.capped_at``, a history note says so), and sinks still get it;
2. a scheduled job (:func:`monitor.alerts.jobs.summaries_due`, every minute, on every instance) claims,
   for each manager whose oldest capped alert waited ``summary_after_seconds``, all
   their capped alerts into one summary (``sm-...``): one transaction inserts the
   summary row, stamps the alerts with it and enqueues the outbox row, so a summary
   is sent once however many instances run;
3. the delivery worker renders it when it sends it
   (:func:`monitor.alerts.messages.summary.render_summary_delivery`)
   — the clients, severities, failures and an acknowledgement link per alert — and,
   once sent, the alerts become ``notified``.

The cap, the window and the wait come from ``rate_limit:`` in ``rules/alerting.yaml``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from monitor.errors import ConfigurationError
from monitor.rulebook import read_section

__all__ = [
    "RateLimit",
    "RateLimitError",
    "Summary",
    "is_summary_id",
    "summary_id_for",
]


class RateLimitError(ConfigurationError):
    """The ``rate_limit:`` section is invalid (the message names the field)."""


class RateLimit(BaseModel):
    """The ``rate_limit:`` section of ``rules/alerting.yaml``.

    Attributes:
        max_messages: messages one manager may get within ``per_seconds``.
        per_seconds: the sliding window of the cap, in seconds of wall clock.
        summary_after_seconds: how long the first capped alert waits before the
            manager's capped alerts go out as one summary.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    max_messages: int = Field(default=10, ge=1)
    per_seconds: int = Field(default=3600, ge=1)
    summary_after_seconds: int = Field(default=900, ge=0)

    @classmethod
    def load(cls, path: Path) -> RateLimit | None:
        """Read the ``rate_limit:`` section; ``None`` when absent (no cap).

        Raises:
            RateLimitError: the file cannot be read or the section is invalid.
        """
        return read_section(path, "rate_limit", cls, RateLimitError)


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """A claimed summary of one manager's capped alerts (times UTC)."""

    summary_id: str
    manager_id: str
    period_start: datetime
    period_end: datetime
    alert_count: int
    created_at: datetime


def summary_id_for(manager_id: str, first_capped_at: datetime) -> str:
    """Return the ID of a manager's summary that starts with the alert capped at that time."""
    digest = hashlib.sha256(f"summary|{manager_id}|{first_capped_at.isoformat()}".encode()).digest()
    return "sm-" + base64.b32encode(digest).decode("ascii")[:20].lower()


def is_summary_id(alert_id: str) -> bool:
    """Whether an outbox row's ``alert_id`` names a rate-cap summary."""
    return alert_id.startswith("sm-")
