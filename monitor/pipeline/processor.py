"""One micro-batch, from raw message values to metrics and VIP failures.

``BatchProcessor.process`` is pure CPU work on a whole batch:

1. decode every value straight into one frame (:func:`monitor.pipeline.decoder.decode_frame`,
   checked per column): invalid ones become rejections, a raw PAN is masked and dropped,
   descriptive fields are cleaned (counted with the metrics); the consumer may hand over
   that frame already decoded in a child process (:mod:`monitor.pipeline.decode_pool`);
2. (the frame has the columns of :data:`monitor.pipeline.batch_frame.EVENT_SCHEMA`);
3. classify the response codes (``rules/response_codes.yaml``), vectorised;
4. find each event's VIP client (sorted search in the registry snapshot);
5. update the metrics from the frame (aggregated, never per event);
6. keep the VIP failures the alert policy says must alert and turn only those
   few rows into :class:`~monitor.domain.VipFailure` values;
7. event time: the :class:`~monitor.pipeline.watermark.EventClock` marks late events (more
   than the allowed lateness behind their partition or the watermark) and moves the
   watermark; late events are counted and left out of steps 8 and 10, which must give
   the same results whatever the batches and the partition interleaving;
8. the observers (terminal health, silent detection) take the events on time;
9. the recovery watch's input: the batch's VIP approved transactions (one filter on
   the frame, late ones included: an approval is an approval), :data:`APPROVAL_COLUMNS`;
10. storm control (optional): follow the frame for outages
   (:class:`~monitor.incidents.IncidentDetector`), judging buckets as the watermark
   closes them and attributing the VIP failures of outage classes to incidents
   (the changes carry them to the store).

Writing the failures to the alert store and committing offsets is the
consumer's job (:mod:`monitor.pipeline.consumer`), in that order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import polars as pl

from monitor.domain import AlertEvent, Manager, VipFailure
from monitor.frames import collect_all
from monitor.incidents import IncidentChange
from monitor.pipeline.classify import ResponseCodeTable
from monitor.pipeline.decoder import DecodedFrame, Rejection, decode_frame
from monitor.pipeline.selection import AlertPolicy
from monitor.pipeline.vips import RegistryLoader, VipRegistry
from monitor.pipeline.watermark import EventClock, PartitionProgress

__all__ = ["APPROVAL_COLUMNS", "STAGES", "BatchMetrics", "BatchProcessor", "FrameObserver",
           "IncidentFollower", "ProcessedBatch"]

log = logging.getLogger(__name__)

#: The stages of :meth:`BatchProcessor.process`, in order (keys of
#: :attr:`BatchProcessor.stage_seconds`).
STAGES: tuple[str, ...] = ("decode", "classify", "vip lookup", "policy", "metrics", "event clock",
                           "observers", "incidents")


#: The columns of :attr:`ProcessedBatch.approvals` (``customer_id``: the VIP client).
APPROVAL_COLUMNS: tuple[str, ...] = ("customer_id", "channel", "txn_type", "occurred_at",
                                     "event_id", "terminal_id", "merchant_id")
_NO_APPROVALS = pl.DataFrame(schema={"customer_id": pl.String, "channel": pl.String,
                                     "txn_type": pl.String, "occurred_at": pl.Datetime("us", "UTC"),
                                     "event_id": pl.String, "terminal_id": pl.String,
                                     "merchant_id": pl.String})


class BatchMetrics(Protocol):
    """What the processor needs from the metrics (see :mod:`monitor.metrics`)."""

    def observe_batch(self, frame: pl.DataFrame) -> None: ...
    def observe_late(self, count: int) -> None: ...

    def observe_sanitised(self, changes: Mapping[tuple[str, str], int]) -> None: ...


@dataclass(slots=True)
class ProcessedBatch:
    """What one batch produced.

    Attributes:
        rejections: messages for the dead-letter topic (index into the batch, reason).
        failures: VIP failures to record as alerts, in batch order.
        events: number of valid events.
        incidents: what the batch did to incidents (storm control), to store with
            the failures; they carry the VIP failures attributed to each incident.
        late: valid events left out of terminal health and incidents as late.
        failure_indices: for each failure, the position in the batch of the message it
            came from (so a failure the store refuses can be dead-lettered).
        approvals: the batch's approved transactions of VIP clients, late ones included
            (columns :data:`APPROVAL_COLUMNS`, ``customer_id`` the client's), for the
            recovery watch (:mod:`monitor.pipeline.recovery`).
    """

    rejections: list[Rejection] = field(default_factory=list)
    failures: list[VipFailure] = field(default_factory=list)
    events: int = 0
    incidents: list[IncidentChange] = field(default_factory=list)
    late: int = 0
    failure_indices: list[int] = field(default_factory=list)
    approvals: pl.DataFrame = field(default_factory=lambda: _NO_APPROVALS)


class _Laps:
    """Adds the time since the previous lap to a stage's total (``stage_seconds``)."""

    __slots__ = ("_last", "seconds")

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds  # <stage: seconds spent in it so far>
        self._last = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] += now - self._last
        self._last = now


class IncidentFollower(Protocol):
    """Storm control as the processor feeds it: :class:`~monitor.incidents.IncidentDetector`, or
    :class:`~monitor.pipeline.fleet.FleetIncidents` (several instances; its ``by_partition``
    asks for each event's ``partition`` column)."""

    def observe(self, frame: pl.DataFrame, *, watermark: Any = ..., vip: pl.DataFrame | None = None
                ) -> list[IncidentChange]: ...


class FrameObserver(Protocol):
    """Anything that follows the classified batch frames (terminal health, silent detection)."""

    def observe(self, frame: pl.DataFrame) -> None: ...


class BatchProcessor:
    """Turns batches of message values into metrics updates and VIP failures.

    Args:
        codes: the response-code table.
        policy: the alert policy.
        registry: holder of the current VIP registry snapshot.
        metrics: receives each batch frame (or ``None`` for no metrics).
        observers: also receive each classified batch frame, after the metrics; an
            observer that raises is logged and skipped, the batch is not re-processed.
        incidents: the storm-control detector, or ``None`` (no incidents); with scale-out,
            :class:`~monitor.pipeline.fleet.FleetIncidents` (it gets each event's partition).
        clock: event time across partitions (late events, the watermark); default:
            one with the default lateness.

    Attributes:
        stage_seconds: wall-clock seconds spent so far in each of :data:`STAGES`
            (for benchmarks and profiling; a few clock reads per batch).
    """

    def __init__(self, *, codes: ResponseCodeTable, policy: AlertPolicy,
                 registry: RegistryLoader, metrics: BatchMetrics | None = None,
                 observers: Sequence[FrameObserver] = (),
                 incidents: IncidentFollower | None = None,
                 clock: EventClock | None = None) -> None:
        self.codes = codes
        self.policy = policy
        self.registry = registry
        self.metrics = metrics
        self.observers = tuple(observers)
        self.incidents = incidents
        self.clock = clock if clock is not None else EventClock()
        self.stage_seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    def process(self, values: list[bytes | None], *, partitions: Sequence[int] | None = None,
                progress: PartitionProgress | None = None,
                decoded: DecodedFrame | None = None) -> ProcessedBatch:
        """Process one batch; a message that makes processing fail is isolated.

        Never raises because of a message's content: if processing the whole batch
        raises, each message is processed alone and the ones that still raise
        become ``processing_error`` rejections.

        The whole batch sees one registry snapshot, also when messages are isolated.

        Args:
            values: the messages' values, each partition's in its order.
            partitions: each message's partition (aligned with ``values``); ``None``:
                one partition.
            progress: the consumer's assigned and caught-up partitions after this
                batch (see :class:`~monitor.pipeline.watermark.EventClock`), or ``None``.
            decoded: ``decode_frame(values)`` already computed (by a child process,
                :mod:`monitor.pipeline.decode_pool`), or ``None`` to decode here. Messages
                isolated after a failure are decoded here again, one by one.
        """
        registry = self.registry.current
        try:
            return self._process(values, offset=0, registry=registry,
                                 partitions=partitions, progress=progress, decoded=decoded)
        except Exception:
            log.exception("batch of %d failed; isolating the message that breaks it", len(values))
        result = ProcessedBatch()
        for index, value in enumerate(values):
            try:
                one = self._process([value], offset=index, registry=registry,
                                    partitions=None if partitions is None else partitions[index:index + 1],
                                    progress=progress)
            except Exception as error:  # a bug, not bad input: keep going, keep the message
                log.exception("message %d of the batch could not be processed", index)
                result.rejections.append(
                    Rejection(index, "processing_error", f"{type(error).__name__} while processing")
                )
                continue
            result.rejections.extend(one.rejections)
            result.failures.extend(one.failures)
            result.failure_indices.extend(one.failure_indices)
            result.events += one.events
            result.incidents.extend(one.incidents)
            result.late += one.late
            if one.approvals.height:
                result.approvals = pl.concat([result.approvals, one.approvals])
        return result

    def _process(self, values: list[bytes | None], *, offset: int, registry: VipRegistry,
                 partitions: Sequence[int] | None, progress: PartitionProgress | None,
                 decoded: DecodedFrame | None = None) -> ProcessedBatch:
        lap = _Laps(self.stage_seconds)
        if decoded is None:
            decoded = decode_frame(values)
        rejections = [
            Rejection(r.index + offset, r.reason, r.detail) for r in decoded.rejections
        ] if offset else decoded.rejections
        lap("decode")
        if decoded.frame.height == 0:  # the partitions' progress may still move the watermark
            incidents = self._follow(decoded.frame, progress)
            lap("incidents")
            return ProcessedBatch(rejections=rejections, incidents=incidents)
        frame = self.codes.classify(decoded.frame)
        lap("classify")
        frame = registry.lookup(frame)
        lap("vip lookup")
        # The alerting rows and the recovery watch's approvals in one polars call.
        lazy = frame.lazy()
        alerting, approvals = collect_all([self.policy.select_plan(lazy.with_row_index("_row")),
                                              _approvals(lazy)])
        rows = alerting.drop_in_place("_row").to_list()  # in place: no polars plan
        positions = [decoded.indices[row] + offset for row in rows]
        failures = [self._failure(row, registry.managers) for row in alerting.iter_rows(named=True)]
        lap("policy")
        # Metrics last: if anything above raises, the batch is isolated and re-processed
        # message by message, and no event may be counted twice.
        if self.metrics is not None:
            self.metrics.observe_batch(frame)
            if decoded.sanitised:
                self.metrics.observe_sanitised(decoded.sanitised)
        lap("metrics")
        # Event time: which events are late (the rest is a function of the events alone).
        on_time, late = frame, 0
        parts = None if partitions is None else [partitions[i] for i in decoded.indices]
        follow = frame
        if parts is not None and getattr(self.incidents, "by_partition", False):
            # Several instances (monitor.pipeline.fleet): incidents count per partition.
            follow = frame.with_columns(pl.Series("partition", parts, dtype=pl.Int32))
        try:
            mask = self.clock.advance(frame.get_column("occurred_at"), parts, progress)
            late = int(mask.sum())
            if late:
                on_time = frame.filter(~mask)
                follow = follow.filter(~mask)
                if self.metrics is not None:
                    self.metrics.observe_late(late)
        except Exception:  # never cost an alert; the events count as on time
            log.exception("event-time tracking failed on a batch of %d events", frame.height)
        lap("event clock")
        for observer in self.observers:
            try:
                observer.observe(on_time)
            except Exception:  # health views must never cost an alert or a double count
                log.exception("%s failed on a batch of %d events", type(observer).__name__, frame.height)
        lap("observers")
        kept = [f for f in failures if f is not None]
        kept_indices = [i for f, i in zip(failures, positions) if f is not None]
        vip = alerting.join(on_time.select("event_id").unique(), on="event_id", how="semi") \
            if late else alerting
        incidents = self._follow(follow, vip=vip)
        lap("incidents")
        return ProcessedBatch(rejections=rejections, failures=kept, events=frame.height,
                              incidents=incidents, late=late, failure_indices=kept_indices,
                              approvals=approvals)

    def _follow(self, on_time: pl.DataFrame, progress: PartitionProgress | None = None, *,
                vip: pl.DataFrame | None = None) -> list[IncidentChange]:
        """Storm control on the events on time; ``progress`` only when the batch had none."""
        if progress is not None:
            self.clock.advance(pl.Series("t", [], dtype=pl.Datetime("us", "UTC")), [], progress)
        if self.incidents is None:
            return []
        try:
            return self.incidents.observe(on_time, watermark=self.clock.watermark_us, vip=vip)
        except Exception:  # storm control must never cost an alert: they go out one by one
            log.exception("incident detection failed on a batch of %d events", on_time.height)
            return []

    def _failure(self, row: dict[str, object], managers: dict[str, Manager]) -> VipFailure | None:
        manager = managers.get(str(row["manager_id"]))
        if manager is None:  # the registry guarantees it; a reload race must not crash
            log.error("client's manager %s is not in the registry; alert skipped", row["manager_id"])
            return None
        code = row["response_code"]
        outcome = str(row["outcome"])
        # The response code's own action (the table's timeout action for a timeout);
        # the policy's per-class action only where the table has none.
        action = self.codes.action(code if isinstance(code, str) else None, status=str(row["status"])) \
            or self.policy.action_for(outcome)
        event = AlertEvent(
            event_id=str(row["event_id"]),
            occurred_at=row["occurred_at"],  # type: ignore[arg-type]  # tz-aware UTC
            channel=str(row["channel"]),
            terminal_id=str(row["terminal_id"]),
            merchant_id=row["merchant_id"],  # type: ignore[arg-type]
            merchant_name=row["merchant_name"],  # type: ignore[arg-type]
            txn_type=str(row["txn_type"]),
            amount_minor=int(row["amount_minor"]),  # type: ignore[call-overload]
            currency=str(row["currency"]),
            response_code=code,  # type: ignore[arg-type]
            outcome=outcome,
            response_meaning=str(row["response_meaning"] or ""),
            status=str(row["status"]),
            card_ref=row["card_ref"],  # type: ignore[arg-type]
            pan_masked=row["pan_masked"],  # type: ignore[arg-type]
            entry_mode=row["entry_mode"],  # type: ignore[arg-type]
            latency_ms=row["latency_ms"],  # type: ignore[arg-type]
            city=row["city"],  # type: ignore[arg-type]
            region=row["region"],  # type: ignore[arg-type]
            branch_id=row["branch_id"],  # type: ignore[arg-type]
        )
        return VipFailure(
            event=event,
            customer_id=str(row["vip_customer_id"]),
            customer_name=str(row["customer_name"] or row["vip_customer_id"]),
            tier=str(row["tier"]),
            manager=manager,
            severity=row["severity"],  # type: ignore[arg-type]
            suggested_action=action,
        )


def _approvals(frame: pl.LazyFrame) -> pl.LazyFrame:
    """The plan of the VIP approved transactions of a classified, looked-up batch frame."""
    return frame.filter(_VIP_APPROVED).select(_APPROVAL_SELECTION)


#: Built once (a polars expression costs Python time to build, on every batch otherwise).
_VIP_APPROVED = (pl.col("outcome") == "approved") & pl.col("vip_customer_id").is_not_null()
_APPROVAL_SELECTION = [pl.col("vip_customer_id").alias("customer_id").cast(pl.String),
                       *[pl.col(name).cast(dtype) for name, dtype in list(_NO_APPROVALS.schema.items())[1:]]]
