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

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from monitor.errors import ConfigurationError
from monitor.rulebook import RuleFile

__all__ = [
    "RateLimit",
    "RateLimitError",
    "Summary",
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
        return cls.from_rules(RuleFile.read(path, error=RateLimitError))

    @classmethod
    def from_rules(cls, rules: RuleFile) -> RateLimit | None:
        """The ``rate_limit:`` section of the alert policy file; ``None`` when absent (no cap).

        Raises:
            RateLimitError: the section is invalid (the message names the field).
        """
        return rules.validate("rate_limit", cls, RateLimitError)


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """A claimed summary of one manager's capped alerts (times UTC)."""

    summary_id: str
    manager_id: str
    period_start: datetime
    period_end: datetime
    alert_count: int
    created_at: datetime



