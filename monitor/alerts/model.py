"""Values the alerting side holds: a VIP failure, an alert and its events.

These are plain frozen dataclasses so they can cross from the pipeline (which
builds :class:`VipFailure` from a polars frame) to the store and the delivery
worker without either knowing about polars or Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = ["AlertEvent", "Manager", "Severity", "SEVERITIES", "VipFailure"]

Severity = Literal["low", "medium", "high"]
#: Ordered from least to most severe.
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high")


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertEvent:
    """One failed transaction as an alert carries it (canonical fields, no raw PAN).

    ``amount_minor`` is integer minor units of ``currency`` (ISO 4217);
    ``occurred_at`` is timezone-aware; ``latency_ms`` is milliseconds.
    ``response_code`` is ``None`` for a timeout (``status == "timeout"``).
    """

    event_id: str
    occurred_at: datetime
    channel: str
    terminal_id: str
    merchant_id: str | None
    txn_type: str
    amount_minor: int
    currency: str
    response_code: str | None
    outcome: str
    response_meaning: str
    status: str = "completed"
    card_ref: str | None = None
    pan_masked: str | None = None
    entry_mode: str | None = None
    latency_ms: float | None = None
    city: str | None = None
    region: str | None = None
    branch_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Manager:
    """A relationship manager as the registry knows them.

    ``timezone`` is an IANA zone name (``Europe/Paris``); alerts show times in it.
    """

    manager_id: str
    name: str
    email: str | None = None
    phone: str | None = None
    webhook_url: str | None = None
    backup_manager_id: str | None = None
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True, kw_only=True)
class VipFailure:
    """A failed transaction of a VIP client that the alert policy says must alert.

    Attributes:
        event: the failed transaction.
        customer_id: the bank's client identifier (never a card number).
        customer_name: the client's name as the manager knows it.
        tier: the client's tier (``rules/alerting.yaml`` names the tiers).
        manager: the client's own relationship manager.
        severity: from the alert policy for this tier and outcome class.
        suggested_action: what the manager should do, one sentence.
    """

    event: AlertEvent
    customer_id: str
    customer_name: str
    tier: str
    manager: Manager
    severity: Severity
    suggested_action: str
