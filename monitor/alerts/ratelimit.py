"""The per-manager rate cap: past a number of messages, the excess goes out as one summary.

A relationship manager who gets more than ``max_messages`` alert messages within
``per_seconds`` stops reading them. So, step by step:

1. when an alert is recorded (:meth:`~monitor.alerts.store.AlertStore.record`), the
   store counts the messages its manager got in the last ``per_seconds`` (alerts
   sent on their own and incident notices; messages folded into an incident do not
   count); at the cap, the alert gets no message of its own: it is *capped*
   (``alerts.capped_at``, a history note says so), and sinks still get it;
2. a scheduled job (:func:`summaries_due`, every minute, on every instance) claims,
   for each manager whose oldest capped alert waited ``summary_after_seconds``, all
   their capped alerts into one summary (``sm-...``): one transaction inserts the
   summary row, stamps the alerts with it and enqueues the outbox row, so a summary
   is sent once however many instances run;
3. the delivery worker renders it when it sends it (:func:`render_summary_delivery`)
   — the clients, severities, failures and an acknowledgement link per alert — and,
   once sent, the alerts become ``notified``.

The cap, the window and the wait come from ``rate_limit:`` in ``rules/alerting.yaml``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict, Field

from monitor.alerts.messages.alert import AlertMessage
from monitor.alerts.preferences import manager_zone
from monitor.domain import SEVERITIES, Alert, Delivery, Manager
from monitor.errors import ConfigurationError
from monitor.ids import content_id
from monitor.privacy import scrub_pans
from monitor.rulebook import RuleFile

if TYPE_CHECKING:
    from monitor.alerts.delivery.links import AckLinks
    from monitor.alerts.lifecycle import AlertState
    from monitor.alerts.store import AlertStore

__all__ = [
    "PAYLOAD_SCHEMA",
    "RateLimit",
    "RateLimitError",
    "Summary",
    "is_summary_id",
    "render_summary",
    "render_summary_delivery",
    "summaries_due",
    "summary_id_for",
]

#: Version of the summary ``payload`` shape.
PAYLOAD_SCHEMA: Final = "cardmon.summary.v1"
# A summary lists at most this many alerts (the counts stay exact).
_MAX_LISTED: Final = 100


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


def summary_id_for(manager_id: str, first_capped_at: datetime) -> str:
    """Return the ID of a manager's summary that starts with the alert capped at that time."""
    return content_id("sm", "summary", manager_id, first_capped_at.isoformat())


def is_summary_id(alert_id: str) -> bool:
    """Whether an outbox row's ``alert_id`` names a rate-cap summary."""
    return alert_id.startswith("sm-")


def summaries_due(
    store: AlertStore,
    now: datetime,
    limit: RateLimit,
    managers: Mapping[str, Manager] | Iterable[Manager],
    *,
    channels: Sequence[str] = ("email", "webhook"),
) -> list[Summary]:
    """Claim and enqueue every summary due at ``now``; one pass, safe on any instance.

    Args:
        store: the alert store shared by every instance.
        now: the current time (aware).
        limit: the rate-cap rules (``summary_after_seconds``).
        managers: the registry's managers (the summary goes to whoever covers them).
        channels: the manager channels that are configured.

    Returns:
        The summaries this call claimed.

    Raises:
        ValueError: ``now`` is naive.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    people = managers if isinstance(managers, Mapping) else {m.manager_id: m for m in managers}
    return store.claim_summaries(now - timedelta(seconds=limit.summary_after_seconds), at=now,
                                 managers=people, channels=channels)


def _scrub(text: str) -> str:
    return scrub_pans(text.encode()).decode()


def render_summary(
    summary: Summary,
    manager: Manager,
    alerts: Sequence[tuple[Alert, AlertState]],
    *,
    ack_urls: Mapping[str, str] | None = None,
) -> AlertMessage:
    """Render a summary of capped alerts for its recipient (times in their zone).

    Returns:
        An :class:`AlertMessage` whose ``alert_id`` is the summary ID.
    """
    zone = manager_zone(manager)
    by_severity = Counter(alert.severity for alert, _ in alerts)
    counts = ", ".join(f"{by_severity[s]} {s}" for s in reversed(SEVERITIES) if by_severity[s])
    subject = (f"[SUMMARY] {len(alerts)} more alert(s) for your clients ({counts}) — "
               "sent together because of the message cap")
    local = "%a %d %b %Y, %H:%M %Z"
    lines = [
        f"Dear {manager.name},",
        "",
        (f"You received many alerts recently, so these {len(alerts)} were held and are sent "
         "together instead of one message each."),
        (f"Held from {summary.period_start.astimezone(zone).strftime(local)} to "
         f"{summary.period_end.astimezone(zone).strftime(local)}."),
        "",
    ]
    ordered = sorted(alerts, key=lambda item: (-SEVERITIES.index(item[0].severity),
                                               item[0].first_event_at))
    for alert, state in ordered[:_MAX_LISTED]:
        lines.append(
            f"  [{alert.severity.upper()}] {alert.customer_name} — {alert.tier}: "
            f"{alert.event_count} failure(s) from "
            f"{alert.first_event_at.astimezone(zone).strftime('%a %H:%M %Z')} [{state}]")
        lines.append(f"      {alert.suggested_action}")
        url = (ack_urls or {}).get(alert.alert_id)
        if url:
            lines.append(f"      acknowledge: {url}")
    if len(ordered) > _MAX_LISTED:
        lines.append(f"  … and {len(ordered) - _MAX_LISTED} more (see the alert API)")
    lines += ["", f"Summary {summary.summary_id}"]
    text = _scrub("\n".join(lines) + "\n")
    payload: dict[str, Any] = {
        "schema": PAYLOAD_SCHEMA,
        "summary_id": summary.summary_id,
        "manager": {"manager_id": manager.manager_id, "name": manager.name},
        "period_start": summary.period_start.isoformat(),
        "period_end": summary.period_end.isoformat(),
        "alert_count": len(alerts),
        "alerts": [{"alert_id": a.alert_id, "customer_id": a.customer_id,
                    "customer_name": a.customer_name, "tier": a.tier, "severity": a.severity,
                    "state": s, "failures": a.event_count,
                    "first_event_at": a.first_event_at.isoformat(),
                    "ack_url": (ack_urls or {}).get(a.alert_id)} for a, s in ordered],
        "subject": _scrub(subject),
        "text": text,
    }
    return AlertMessage(alert_id=summary.summary_id, subject=_scrub(subject), text=text,
                        payload=json.loads(_scrub(json.dumps(payload, ensure_ascii=False))),
                        email=manager.email, webhook_url=manager.webhook_url)


def render_summary_delivery(store: AlertStore, delivery: Delivery, *,
                            links: AckLinks | None = None) -> AlertMessage:
    """Render the message of a summary's outbox row (synchronous: call it through a thread).

    Raises:
        LookupError: the summary or its recipient is not in the store.
    """
    summary = store.summary(delivery.alert_id)
    recipient = store.delivery_recipient(delivery.delivery_id)
    if summary is None or recipient is None:
        raise LookupError(f"summary {delivery.alert_id} is not in the store")
    alerts = store.summary_alerts(summary.summary_id)
    person = delivery.channel.partition(":")[0] in ("email", "webhook", "apprise")
    ack_urls = ({alert.alert_id: links.url(alert.alert_id, recipient.manager_id) for alert, _ in alerts}
                if links is not None and person else None)
    message = render_summary(summary, recipient, alerts, ack_urls=ack_urls)
    return replace(message, alert_id=delivery.alert_id).for_channel(delivery.channel)
