"""cardmon's shared vocabulary: the transaction event and the values alerting holds.

The bottom of the package: it imports nothing of cardmon. Two halves:

* the canonical transaction event (contract v1) and the values it may take. One UTF-8
  JSON object per Kafka message on ``card.transactions``, message key = terminal ID.
  The JSON Schema that documents this contract is ``schemas/transaction-event.v1.json``;
  :mod:`monitor.pipeline.decoder` enforces it. Field names follow ISO 8583:1987 where one
  exists: ``terminal_id`` is field 41 (card acceptor terminal identification),
  ``merchant_id`` is field 42 (card acceptor identification code), ``response_code`` is
  field 39, ``stan`` is field 11, ``rrn`` is field 37, ``processing_code`` is field 3 and
  ``mti`` is the message type indicator. ``merchant_name`` is field 43 (card acceptor
  name/location). Which text fields identify (rejected when they hold a control character
  or a PAN) and which describe (cleaned and masked) is :mod:`monitor.pipeline.contract`.
* what the alerting side holds: a relationship manager, a VIP failure, an alert, its
  events and deliveries, severities. Plain frozen dataclasses, so they cross from the
  pipeline (which builds :class:`VipFailure` from a polars frame) to the store and the
  delivery worker without either knowing about polars or Kafka.

Kept whole (about 350 lines) because it is one vocabulary that every layer reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Annotated, Any, Final, Literal

import msgspec

__all__ = [
    "ALERT_STATUSES",
    "CHANNELS",
    "DELIVERY_STATUSES",
    "ENTRY_MODES",
    "OUTCOMES",
    "SEVERITIES",
    "STATUSES",
    "TXN_TYPES",
    "Alert",
    "AlertEvent",
    "AlertStatus",
    "Channel",
    "Delivery",
    "DeliveryStatus",
    "EntryMode",
    "Manager",
    "Outcome",
    "Severity",
    "Status",
    "TransactionEvent",
    "TxnType",
    "VipFailure",
]

Channel = Literal["ATM", "POS", "ECOM"]
TxnType = Literal["purchase", "withdrawal", "balance_inquiry", "transfer", "refund", "reversal"]
#: ISO 8583 field 22 (POS entry mode): ``fallback`` is a chip card read by its magnetic
#: stripe because the chip read failed (entry mode 80), the card-reader health signal.
EntryMode = Literal["chip", "contactless", "swipe", "fallback", "manual", "online"]
#: ``completed``: the issuer (or stand-in) answered with a response code;
#: ``timeout``: no response arrived, so there is no response code.
Status = Literal["completed", "timeout"]
#: Outcome classes derived from the response code (see ``rules/response_codes.yaml``).
Outcome = Literal["approved", "technical", "terminal", "card", "customer", "fraud", "unknown"]

CHANNELS: Final[tuple[str, ...]] = ("ATM", "POS", "ECOM")
TXN_TYPES: Final[tuple[str, ...]] = (
    "purchase", "withdrawal", "balance_inquiry", "transfer", "refund", "reversal",
)
ENTRY_MODES: Final[tuple[str, ...]] = ("chip", "contactless", "swipe", "fallback", "manual", "online")
STATUSES: Final[tuple[str, ...]] = ("completed", "timeout")
OUTCOMES: Final[tuple[str, ...]] = (
    "approved", "technical", "terminal", "card", "customer", "fraud", "unknown",
)

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
# ISO 8583 field 41 is 8 characters; acquirers in the wild use up to 16.
_TerminalId = Annotated[str, msgspec.Meta(min_length=1, max_length=16, pattern=r"^[\x21-\x7e]+$")]
# ISO 8583 field 42 is 15 characters; recorded data sets carry longer ids (TabFormer: 20).
_MerchantId = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
_Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
_ResponseCode = Annotated[str, msgspec.Meta(pattern=r"^[0-9A-Z]{2}$")]
# PCI DSS display masking: at most the first six and last four digits visible.
_PanMasked = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}[*Xx]{2,9}[0-9]{4}$")]
_AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
# Integer minor units (ISO 4217 exponent); bounded so a typo cannot overflow a sum.
_AmountMinor = Annotated[int, msgspec.Meta(ge=0, le=10**15)]
# One hour is far past any scheme's authorization timeout.
_LatencyMs = Annotated[float, msgspec.Meta(ge=0, le=3_600_000)]


class TransactionEvent(msgspec.Struct, kw_only=True, omit_defaults=True, repr_omit_defaults=True):
    """One authorization outcome at an ATM, POS terminal or e-commerce gateway.

    Money is ``amount_minor`` (integer minor units of ``currency``, ISO 4217);
    ``occurred_at`` is timezone-aware; ``latency_ms`` is milliseconds.
    ``card_ref`` is a token or hash of the card, never the PAN; ``pan_masked`` shows
    at most the first six and last four digits (PCI DSS 3.4).

    ``raw_pan`` exists only so the decoder can see a raw ``pan`` that a producer
    wrongly sent, of any JSON type; :func:`monitor.pipeline.decoder.decode_batch` masks it into
    ``pan_masked`` and sets it to ``None`` before any event leaves the decoder.
    """

    event_id: _Id
    occurred_at: _AwareDatetime
    channel: Channel
    terminal_id: _TerminalId
    txn_type: TxnType
    amount_minor: _AmountMinor
    currency: _Currency
    card_ref: _Id
    status: Status = "completed"
    response_code: _ResponseCode | None = None
    merchant_id: _MerchantId | None = None
    #: ISO 8583 field 43, card acceptor name/location (40 characters in the standard).
    merchant_name: _ShortText | None = None
    pan_masked: _PanMasked | None = None
    customer_id: _Id | None = None
    latency_ms: _LatencyMs | None = None
    entry_mode: EntryMode | None = None
    city: _ShortText | None = None
    region: _ShortText | None = None
    branch_id: _ShortText | None = None
    #: The source system's own words for a decline, when it gave several (TabFormer).
    decline_reasons: list[_ShortText] | None = None
    mti: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}$")] | None = None
    stan: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")] | None = None
    rrn: Annotated[str, msgspec.Meta(pattern=r"^[0-9A-Za-z]{12}$")] | None = None
    processing_code: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")] | None = None
    raw_pan: Any = msgspec.field(default=None, name="pan")


Severity = Literal["low", "medium", "high"]
#: Ordered from least to most severe.
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high")

#: ``pending``: waiting for its first or next attempt; ``sent``: the channel accepted it;
#: ``failed``: every attempt failed (the last error is kept); ``merged``: never tried, folded
#: into an incident notice that names the alert (:mod:`monitor.incidents`).
DeliveryStatus = Literal["pending", "sent", "failed", "merged"]
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = ("pending", "sent", "failed", "merged")
#: Derived from the alert's deliveries to people (``email``, ``webhook``, ``apprise:<n>``;
#: sinks do not count): ``notified`` once one of them is sent, ``failed`` when all of
#: them failed, ``pending`` while one is still due, ``merged`` when its only messages are
#: the notices of the incident it belongs to, ``late`` when it was recorded late (stale
#: events: paged to nobody), ``unrouted`` when no message of its own goes to a person
#: (no channel reaches the manager, the manager muted that severity, or an incident
#: notice or a rate-cap summary carries it).
AlertStatus = Literal["pending", "notified", "failed", "unrouted", "merged", "late"]
ALERT_STATUSES: tuple[AlertStatus, ...] = ("pending", "notified", "failed", "unrouted", "merged", "late")


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertEvent:
    """One failed transaction as an alert carries it (canonical fields, no raw PAN).

    ``amount_minor`` is integer minor units of ``currency`` (ISO 4217);
    ``occurred_at`` is timezone-aware; ``latency_ms`` is milliseconds.
    ``response_code`` is ``None`` for a timeout (``status == "timeout"``).
    ``merchant_name`` is ISO 8583 field 43 (card acceptor name/location) as the
    decoder cleaned it; the alert store does not keep it yet (no column), so an alert
    read back from the store has ``None``.
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
    merchant_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Manager:
    """A relationship manager as the registry knows them.

    ``timezone`` is an IANA zone name (``Europe/Paris``); alerts show times in it.
    ``locale`` is a BCP 47 tag (``en``, ``fr``, ``zh-Hans``, ``fr-CA``): the language
    and formats of the manager's pages and messages (:mod:`monitor.i18n`).

    ``channels`` maps a severity to the route keys the manager wants for it
    (``email``, ``webhook``, ``apprise:0``...; see :mod:`monitor.alerts.routing`);
    empty means the default (e-mail if an address, webhook if a URL). A severity
    missing from a non-empty map also gets the default. ``apprise_urls`` are the
    Apprise targets that ``apprise:<index>`` keys point into; they carry tokens, so
    they are left out of ``repr`` and never logged.

    Preferences (see :mod:`monitor.alerts.preferences`, all optional):
    ``working_hours`` and ``quiet_hours`` are opening-hours texts (``Mo-Fr 08:00-18:00``)
    in the manager's zone, ``None`` meaning "always working" and "never quiet";
    ``away_from``/``away_until`` bound an absence (aware, ``[from, until)``; either end
    may be open); ``digest_at`` is the local time of the daily digest (``None``: none);
    ``notify_resolved``: the manager opted in to a follow-up when an incident that hit
    their clients ends; ``recovery_follow_up``: the manager opted in to one short message
    when the recovery watch of their client's alert is decided (recovered or abandoned;
    :mod:`monitor.alerts.messages.recovery`).
    """

    manager_id: str
    name: str
    email: str | None = None
    phone: str | None = None
    webhook_url: str | None = field(default=None, repr=False)  # may carry user:pass@ or a token
    backup_manager_id: str | None = None
    timezone: str = "UTC"
    locale: str = "en"
    channels: dict[Severity, tuple[str, ...]] = field(default_factory=dict, hash=False)
    apprise_urls: tuple[str, ...] = field(default=(), repr=False)
    working_hours: str | None = None
    quiet_hours: str | None = None
    away_from: datetime | None = None
    away_until: datetime | None = None
    digest_at: time | None = None
    notify_resolved: bool = False
    recovery_follow_up: bool = False


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
        incident_id: the incident (outage) the failure belongs to, if storm control
            attributed it to one (:mod:`monitor.incidents`).
    """

    event: AlertEvent
    customer_id: str
    customer_name: str
    tier: str
    manager: Manager
    severity: Severity
    suggested_action: str
    incident_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One message of one alert to one channel, as the outbox holds it.

    Attributes:
        delivery_id: the outbox row id.
        alert_id: the alert this message is about, or the manager's daily digest
            (``dg-...``, :mod:`monitor.alerts.messages.digest`).
        channel: ``email``, ``webhook`` or a sink name (``console``, ``jsonl``).
        status: see :data:`DeliveryStatus`.
        attempts: attempts made so far.
        next_attempt_at: when the worker may try (again); timezone-aware (UTC).
        last_error: the last attempt's error, ``None`` if none failed.
        created_at: when the alert was recorded.
        sent_at: when the channel accepted it, ``None`` until then.
        first_attempt_at: when it was first tried (retries are bounded by time from
            here), ``None`` until then (or since a re-send).
        fallback_at: when the fallback was told that it is not getting through,
            ``None`` if not (yet).
        resent_by: who re-queued it after it had failed (``cardmon alerts resend``),
            ``None`` if nobody did.
        resent_at: when they did.
    """

    delivery_id: int
    alert_id: str
    channel: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None = None
    first_attempt_at: datetime | None = None
    fallback_at: datetime | None = None
    resent_by: str | None = None
    resent_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One alert: the failures of one client within one grouping window.

    Attributes:
        alert_id: derived from ``customer_id`` and ``window_start`` (replays map to it).
        customer_id: the bank's client identifier.
        customer_name: the client's name when the alert was raised.
        tier: the client's tier.
        manager: snapshot of the relationship manager when the alert was raised.
        severity: the highest severity among its events.
        suggested_action: the action of its most severe event (the earliest of those,
            by event time then event ID, on a tie: not the first to arrive).
        window_start: start of the event-time window (UTC, inclusive).
        window_end: end of the window (UTC, exclusive).
        first_event_at: earliest ``occurred_at`` among its events (UTC).
        last_event_at: latest ``occurred_at`` among its events (UTC).
        event_count: number of distinct events.
        status: see :data:`AlertStatus`.
        created_at: when it was first recorded (wall clock, UTC).
        updated_at: when an event was last added (wall clock, UTC).
        deliveries: its outbox rows, one per channel.
        late: its first failure was older than ``alerting.stale_after_seconds`` when it
            was processed: stored and exported, shown in the digest, paged to nobody.
        unroutable: its manager wants messages at its severity but no configured
            channel reaches them (counted and logged when it was recorded).
    """

    alert_id: str
    customer_id: str
    customer_name: str
    tier: str
    manager: Manager
    severity: Severity
    suggested_action: str
    window_start: datetime
    window_end: datetime
    first_event_at: datetime
    last_event_at: datetime
    event_count: int
    status: AlertStatus
    created_at: datetime
    updated_at: datetime
    deliveries: tuple[Delivery, ...] = ()
    late: bool = False
    unroutable: bool = False
