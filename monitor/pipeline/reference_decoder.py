"""The reference decoder: Kafka message values to :class:`~monitor.domain.TransactionEvent`, one by one.

The decoder is the privacy and validity gate of the pipeline:

* every value is decoded with one compiled msgspec decoder (strict types, no
  coercion), so a whole batch costs one tight loop;
* a message that breaks the contract becomes a :class:`Rejection` with a short
  machine-readable ``reason`` (used as the dead-letter header and metric label)
  and a human ``detail``; the messages around it are unaffected;
* text fields follow :mod:`monitor.pipeline.contract`: an identity field (event, terminal, card,
  client or merchant ID, an ISO 8583 id) holding a control or invisible character or
  a PAN form rejects the event; a descriptive field (merchant name, city, region,
  branch) is cleaned and any PAN form in it masked, the event is processed and the
  change counted (:attr:`DecodedBatch.sanitised`);
* a raw PAN sent in ``pan`` (any JSON type) is masked into ``pan_masked`` and dropped
  (PCI DSS 3.3/3.4); the event is processed and a ``raw_pan`` rejection is also
  reported so the producer can be fixed (its dead-letter copy never holds ``pan``:
  :func:`monitor.dead_letter_copy.dead_letter_copy`).

:func:`decode_batch` here is the definition of what is valid; the pipeline's fast path
(:func:`monitor.pipeline.decoder.decode_frame`, column checks in
:mod:`monitor.pipeline.column_checks`) gives exactly its result and sends every message
it cannot clear through it. PAN detection, masking and scrubbing live in
:mod:`monitor.privacy`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from babel.numbers import list_currencies

from monitor.domain import TransactionEvent
from monitor.pipeline.contract import (
    DESCRIPTIVE_FIELDS,
    DESCRIPTIVE_LIST_FIELDS,
    FORBIDDEN_IN_IDENTITY_CLASS,
    IDENTITY_FIELDS,
    clean_descriptive,
    identity_problem,
)
from monitor.privacy import PAN_MIN_DIGITS, mask_pan, mask_pans

__all__ = [
    "CURRENCIES",
    "EARLIEST_EVENT_TIME",
    "IDENTITY_JOINER",
    "LATEST_EVENT_TIME",
    "DecodedBatch",
    "Rejection",
    "Sanitised",
    "classify_decode_error",
    "decode_batch",
]

_decoder: Final = msgspec.json.Decoder(TransactionEvent)
#: ISO 4217 codes known to CLDR (via Babel), including funds codes.
CURRENCIES: Final[frozenset[str]] = frozenset(list_currencies())
#: What one line of a rejection detail (a Kafka header) or an identity field may not hold.
_DETAIL_CONTROL: Final = re.compile(FORBIDDEN_IN_IDENTITY_CLASS)
#: Joins identity values for one search: a private-use character, not forbidden (not a
#: digit, separator or invisible one either, so no PAN form spans two values).
IDENTITY_JOINER: Final = "\ue000"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that could not become a valid event.

    Attributes:
        index: position of the message in the batch given to :func:`decode_batch`.
        reason: short code, one of ``invalid_utf8``, ``invalid_json``, ``not_an_object``,
            ``missing_field``, ``invalid_field`` (including a control or invisible
            character in an identity field), ``naive_timestamp``,
            ``unknown_currency``, ``response_code_required``, ``pan_in_card_ref``,
            ``pan_in_field`` (a PAN in another identity field), ``raw_pan`` (the
            event was still processed, with the PAN masked).
        detail: one line for a person; never contains a PAN or a field's value.
    """

    index: int
    reason: str
    detail: str


#: A change the decoder made to a valid event: ``(field, change)`` with change ``text``
#: (control, invisible or white-space characters cleaned) or ``pan`` (a PAN masked).
Sanitised = tuple[str, str]


@dataclass(slots=True)
class DecodedBatch:
    """The result of decoding one batch.

    Attributes:
        events: the valid events, in batch order.
        indices: for each event, its position in the input batch.
        rejections: one per invalid message (and one per scrubbed raw PAN).
        sanitised: events whose descriptive fields were changed, per
            ``(field, change)`` (see :data:`Sanitised`); valid events only.
    """

    events: list[TransactionEvent] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    sanitised: Counter[Sanitised] = field(default_factory=Counter)


def classify_decode_error(value: bytes,
                          error: msgspec.DecodeError | msgspec.ValidationError) -> tuple[str, str]:
    """The rejection ``(reason, detail)`` of a msgspec decode or validation error.

    msgspec echoes bad values (``Invalid enum value '4111...'``): every PAN form in the
    message is masked (escapes read too) and control characters become spaces, so the
    detail is one line without a PAN.
    """
    message = _DETAIL_CONTROL.sub(" ", mask_pans(str(error)))
    if isinstance(error, msgspec.ValidationError):
        if message.startswith("Object missing required field"):
            return "missing_field", message
        if "timezone" in message or "tz" in message:
            return "naive_timestamp", message
        if message.startswith("Expected `object`"):
            return "not_an_object", message
        return "invalid_field", message
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8", "message is not valid UTF-8"
    return "invalid_json", message

#: Event times outside this range are typos or broken clocks, not transactions. The upper
#: bound is fixed, not "now": replays rebased to now legitimately run into the future.
EARLIEST_EVENT_TIME: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_EVENT_TIME: Final = datetime(2100, 1, 1, tzinfo=UTC)


def _sanitise(event: TransactionEvent, changes: list[Sanitised]) -> None:
    """Clean the descriptive fields of ``event`` in place; append what changed to ``changes``."""
    for name in DESCRIPTIVE_FIELDS:
        text = getattr(event, name)
        if text is None:
            continue
        cleaned = clean_descriptive(text)
        if cleaned.text_changed or cleaned.pan_masked:
            setattr(event, name, cleaned.value)
            if cleaned.text_changed:
                changes.append((name, "text"))
            if cleaned.pan_masked:
                changes.append((name, "pan"))
    for name in DESCRIPTIVE_LIST_FIELDS:
        items = getattr(event, name)
        if not items:
            continue
        results = [clean_descriptive(item) for item in items]
        if any(r.text_changed or r.pan_masked for r in results):
            kept = [r.value for r in results if r.value is not None]
            setattr(event, name, kept or None)
            if any(r.text_changed for r in results):
                changes.append((name, "text"))
            if any(r.pan_masked for r in results):
                changes.append((name, "pan"))


def _check(event: TransactionEvent) -> tuple[str, str] | None:
    present = [(name, text) for name in IDENTITY_FIELDS if (text := getattr(event, name)) is not None]
    # One search for a forbidden character in all of them; without one, only a value
    # long enough for a PAN can hold a problem. Fields are checked in contract order.
    if _DETAIL_CONTROL.search(IDENTITY_JOINER.join(text for _, text in present)) is None:
        present = [(name, text) for name, text in present if len(text) >= PAN_MIN_DIGITS]
    for name, text in present:
        problem = identity_problem(name, text)
        if problem is not None:
            return problem
    if not EARLIEST_EVENT_TIME <= event.occurred_at < LATEST_EVENT_TIME:
        return "invalid_field", "occurred_at is not between 1970 and 2100"
    if event.currency not in CURRENCIES:
        return "unknown_currency", f"currency {event.currency!r} is not an ISO 4217 code"
    if event.status == "completed" and event.response_code is None:
        return "response_code_required", "response_code is required unless status is 'timeout'"
    return None


def _raw_pan_masked(value: Any) -> str | None:
    """The mask of a raw ``pan`` value of any JSON type, ``None`` if it is not a PAN."""
    if isinstance(value, str):
        return mask_pan(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return mask_pan(str(value))
    return None


def decode_batch(values: list[bytes | None]) -> DecodedBatch:
    """Decode Kafka message values into events.

    Args:
        values: raw message values in batch order; ``None`` is a tombstone and is rejected.

    Returns:
        A :class:`DecodedBatch`. Never raises on bad input: every message is either an
        event or a rejection (a message with a raw PAN is both, the event carrying only
        the masked PAN).
    """
    batch = DecodedBatch()
    events, indices, rejections = batch.events, batch.indices, batch.rejections
    decode = _decoder.decode
    for index, value in enumerate(values):
        if value is None:
            rejections.append(Rejection(index, "invalid_json", "empty message (tombstone)"))
            continue
        try:
            event = decode(value)
        except RecursionError:
            rejections.append(Rejection(index, "invalid_json", "JSON nested too deeply"))
            continue
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            reason, detail = classify_decode_error(value, error)
            rejections.append(Rejection(index, reason, detail))
            continue
        had_raw_pan = event.raw_pan is not None
        if had_raw_pan:
            masked = _raw_pan_masked(event.raw_pan)
            event.raw_pan = None
            if event.pan_masked is None and masked is not None:
                event.pan_masked = masked
        changes: list[Sanitised] = []
        _sanitise(event, changes)
        problem = _check(event)
        if problem is not None:
            reason, detail = problem
            if had_raw_pan:
                detail += "; it also carried a raw PAN in field 'pan'"
            rejections.append(Rejection(index, reason, detail))
            continue
        if had_raw_pan:
            rejections.append(
                Rejection(index, "raw_pan", "raw PAN in field 'pan': masked and dropped (PCI DSS)")
            )
        events.append(event)
        indices.append(index)
        batch.sanitised.update(changes)
    return batch
