"""The canonical transaction event (contract v1) and the values it may take.

One UTF-8 JSON object per Kafka message on ``card.transactions``, message key =
terminal ID. The JSON Schema that documents this contract is
``schemas/transaction-event.v1.json``; :mod:`monitor.decoder` enforces it.

Field names follow ISO 8583:1987 where one exists: ``terminal_id`` is field 41
(card acceptor terminal identification), ``merchant_id`` is field 42 (card
acceptor identification code), ``response_code`` is field 39, ``stan`` is field
11, ``rrn`` is field 37, ``processing_code`` is field 3 and ``mti`` is the
message type indicator. ``merchant_name`` is field 43 (card acceptor name/location).

Which text fields identify (rejected when they hold a control character or a PAN)
and which describe (cleaned and masked) is :mod:`monitor.fields`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec

__all__ = [
    "CHANNELS",
    "ENTRY_MODES",
    "OUTCOMES",
    "STATUSES",
    "TXN_TYPES",
    "Channel",
    "EntryMode",
    "Outcome",
    "Status",
    "TransactionEvent",
    "TxnType",
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
    wrongly sent, of any JSON type; :func:`monitor.decoder.decode_batch` masks it into
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
