"""Device status events (topic ``card.terminal-status``): contract, decoder, book, consumer.

One UTF-8 JSON object per Kafka message, **message key = terminal ID**; JSON Schema
``schemas/terminal-status.v1.json``, producer guide ``docs/terminal-status.md``.
The vocabulary follows the ATM device-status models of CEN/XFS (CWA 16926: device
states ``WFS_STAT_DEVONLINE``/``OFFLINE``/``HWERROR``, cash-unit states
``WFS_CDM_STATCULOW``/``STATCUEMPTY``, paper ``WFS_PTR_PAPERLOW``/``PAPEROUT``) and
NCR NDC status messages (supplies status good / media low / media out, error
severity routine / warning / suspend / fatal), reduced to what operations act on.

Processing follows :mod:`monitor.pipeline.consumer` exactly — the same consumer class and
commit protocol, with :class:`StatusProcessor` in place of the transaction
pipeline: decode the batch, apply the valid events to the :class:`DeviceStatusBook`
(event-time ordered, so a redelivered or late event never undoes a newer one),
dead-letter the rejected messages with their reason, then commit.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Literal

import msgspec

from monitor.config import KafkaSettings
from monitor.pipeline.consumer import ConsumerMetrics, TransactionConsumer
from monitor.pipeline.decoder import Rejection, classify_decode_error
from monitor.pipeline.processor import ProcessedBatch
from monitor.privacy import scrub_pans

__all__ = [
    "COMPONENTS",
    "DEFAULT_SEVERITY",
    "SEVERITIES",
    "STATES",
    "ComponentStatus",
    "DecodedStatusBatch",
    "DeviceStatusBook",
    "DeviceStatusEvent",
    "StatusConsumer",
    "StatusProcessor",
    "decode_status_batch",
]

log = logging.getLogger(__name__)

Component = Literal["card_reader", "cash_dispenser", "cassette", "receipt_printer", "pin_pad", "network"]
State = Literal["ok", "low", "empty", "fault", "offline"]
Severity = Literal["info", "warning", "critical"]

COMPONENTS: Final = ("card_reader", "cash_dispenser", "cassette", "receipt_printer", "pin_pad", "network")
STATES: Final = ("ok", "low", "empty", "fault", "offline")
SEVERITIES: Final = ("info", "warning", "critical")
#: ``low``/``empty`` are supply levels (XFS cash units and paper, NDC supplies status):
#: only components that hold a supply can report them.
SUPPLY_COMPONENTS: Final = ("cash_dispenser", "cassette", "receipt_printer")
#: Severity of an event that does not say (NDC error severity: routine → info,
#: warning → warning, suspend/fatal → critical).
DEFAULT_SEVERITY: Final[dict[str, str]] = {
    "ok": "info", "low": "warning", "empty": "critical", "fault": "critical", "offline": "critical",
}

_TerminalId = Annotated[str, msgspec.Meta(min_length=1, max_length=16, pattern=r"^[\x21-\x7e]+$")]
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class DeviceStatusEvent(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """One component of one terminal changed (or confirmed) its state.

    ``occurred_at`` is when the terminal saw the state (aware, RFC 3339 with offset);
    ``severity`` defaults from the state (:data:`DEFAULT_SEVERITY`); ``detail`` is
    free text for people (e.g. the XFS or NDC code seen), never card data.
    """

    event_id: _Id
    occurred_at: Annotated[datetime, msgspec.Meta(tz=True)]
    terminal_id: _TerminalId
    component: Component
    state: State
    severity: Severity | None = None
    detail: _Text | None = None
    model: _Id | None = None

    @property
    def effective_severity(self) -> str:
        """The event's severity, or the state's default."""
        return self.severity or DEFAULT_SEVERITY[self.state]


_decoder: Final = msgspec.json.Decoder(DeviceStatusEvent)
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class DecodedStatusBatch:
    """Valid events (with their batch positions) and rejections of one batch."""

    events: list[DeviceStatusEvent] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


#: Device status is live telemetry, never replayed into the future: an event stamped
#: later than this past the wall clock is a device clock error and would otherwise pin
#: the component's state (an older event never overwrites a newer one).
_FUTURE_TOLERANCE: Final = timedelta(minutes=5)


def _check(event: DeviceStatusEvent, latest: datetime) -> tuple[str, str] | None:
    texts = [t for t in (event.event_id, event.detail, event.model) if t]
    if any(_CONTROL.search(t) for t in texts):
        return "invalid_field", "a text field holds a control character or line separator"
    if any(scrub_pans(t.encode()) != t.encode() for t in texts):
        return "pan_in_field", "a text field holds a PAN; status events carry no card data"
    if not _EARLIEST <= event.occurred_at < _LATEST:
        return "invalid_field", "occurred_at is not between 1970 and 2100"
    if event.occurred_at > latest:
        return "invalid_field", "occurred_at is more than 5 minutes in the future (device clock?)"
    if event.state in ("low", "empty") and event.component not in SUPPLY_COMPONENTS:
        return "invalid_state", (f"state {event.state!r} is a supply level; {event.component!r} "
                                 f"holds no supply (only {', '.join(SUPPLY_COMPONENTS)})")
    return None


def decode_status_batch(values: Sequence[bytes | None]) -> DecodedStatusBatch:
    """Decode Kafka message values into device status events.

    Returns:
        A :class:`DecodedStatusBatch`; never raises on bad input. Reasons are those of
        :class:`monitor.pipeline.decoder.Rejection` plus ``invalid_state`` (``low``/``empty`` on a
        component without supply).
    """
    batch = DecodedStatusBatch()
    latest = datetime.now(UTC) + _FUTURE_TOLERANCE
    for index, value in enumerate(values):
        if value is None:
            batch.rejections.append(Rejection(index, "invalid_json", "empty message (tombstone)"))
            continue
        try:
            event = _decoder.decode(value)
        except RecursionError:
            batch.rejections.append(Rejection(index, "invalid_json", "JSON nested too deeply"))
            continue
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            batch.rejections.append(Rejection(index, *classify_decode_error(value, error)))
            continue
        problem = _check(event, latest)
        if problem is not None:
            batch.rejections.append(Rejection(index, *problem))
            continue
        batch.events.append(event)
        batch.indices.append(index)
    return batch


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """The latest known state of one component of one terminal."""

    state: str
    severity: str
    occurred_at: datetime
    event_id: str
    detail: str | None = None


class DeviceStatusBook:
    """Latest state per (terminal, component), ordered by event time.

    An event older than the one the book holds is ignored; at equal times the later
    arrival wins. Memory: one small entry per component that ever reported.
    """

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], ComponentStatus] = {}  # <(terminal_id, component): status>

    def __len__(self) -> int:
        return len(self._latest)

    def apply(self, events: Sequence[DeviceStatusEvent]) -> list[DeviceStatusEvent]:
        """Apply events in any order; return those that changed a component's state.

        Returns:
            The events now held whose state or severity differs from what the book
            held before (an ``ok`` confirming ``ok`` is not a change), in time order.
        """
        before: dict[tuple[str, str], ComponentStatus | None] = {}  # <key: status before the batch>
        final: dict[tuple[str, str], DeviceStatusEvent] = {}  # <key: event now held>
        latest = self._latest
        for event in sorted(events, key=lambda e: e.occurred_at):
            key = (event.terminal_id, event.component)
            held = latest.get(key)
            if held is not None and event.occurred_at < held.occurred_at:
                continue
            before.setdefault(key, held)
            latest[key] = ComponentStatus(event.state, event.effective_severity, event.occurred_at,
                                          event.event_id, event.detail)
            final[key] = event
        changed = [
            event for key, event in final.items()
            if (old := before[key]) is None
            or (old.state, old.severity) != (latest[key].state, latest[key].severity)
        ]
        return sorted(changed, key=lambda e: e.occurred_at)

    def get(self, terminal_id: str, component: str) -> ComponentStatus | None:
        """The latest state of one component, or ``None`` if it never reported."""
        return self._latest.get((terminal_id, component))

    def components(self, terminal_id: str) -> dict[str, ComponentStatus]:
        """Every component of one terminal that has reported, by component name."""
        return {c: s for (t, c), s in self._latest.items() if t == terminal_id}

    def not_ok(self) -> list[tuple[str, str, ComponentStatus]]:
        """``(terminal_id, component, status)`` of every component whose state is not ``ok``."""
        return [(t, c, s) for (t, c), s in self._latest.items() if s.state != "ok"]

    def forget(self, terminal_ids: set[str]) -> None:
        """Drop every component of these terminals (decommissioned, retention passed)."""
        for key in [k for k in self._latest if k[0] in terminal_ids]:
            del self._latest[key]


class StatusProcessor:
    """The status topic's batch step: decode, apply to the book, report the changes.

    Args:
        book: the device status book to update.
        on_change: called with the events that changed a component (e.g.
            ``HealthBook.apply_status``), or ``None``.
    """

    def __init__(self, book: DeviceStatusBook,
                 on_change: Callable[[list[DeviceStatusEvent]], object] | None = None) -> None:
        self.book = book
        self._on_change = on_change

    def process(self, values: list[bytes | None], **_partitions: object) -> ProcessedBatch:
        """Process one batch; never raises because of a message's content.

        The partition keywords of :meth:`monitor.pipeline.processor.BatchProcessor.process` are
        accepted and unused: device status keeps the latest event per component.
        """
        decoded = decode_status_batch(values)
        changed = self.book.apply(decoded.events)
        if changed and self._on_change is not None:
            try:
                self._on_change(changed)
            except Exception:  # the book is right; the health state catches up on the next change
                log.exception("reporting %d device status change(s) failed", len(changed))
        return ProcessedBatch(rejections=decoded.rejections, events=len(decoded.events))


async def _no_failures(_: object) -> None:
    """Status events never make VIP failures: nothing to store before the commit."""


class StatusConsumer(TransactionConsumer):
    """Consumes ``card.terminal-status`` with the transaction consumer's commit protocol.

    Args:
        settings: Kafka settings whose ``topic`` is the status topic, ``dead_letter_topic``
            its dead-letter topic and ``group_id`` its own consumer group.
        book: the device status book the events update.
        on_change: receives the events that changed a component, or ``None``.
        metrics: pipeline metrics (rejections, dead letters, lag), or ``None``.
    """

    def __init__(self, settings: KafkaSettings, *, book: DeviceStatusBook,
                 on_change: Callable[[list[DeviceStatusEvent]], object] | None = None,
                 metrics: ConsumerMetrics | None = None) -> None:
        super().__init__(settings, processor=StatusProcessor(book, on_change),  # type: ignore[arg-type]
                         record_failures=_no_failures, metrics=metrics)
        self.book = book
