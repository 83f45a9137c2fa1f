"""BatchProcessor: one micro-batch of raw values to VIP failures and rejections, with the real rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from monitor.alerts.messages.alert import render_delivery
from monitor.alerts.store import AlertStore
from monitor.domain import AlertEvent, Manager, VipFailure
from monitor.paths import rules_path
from monitor.pipeline.classify import ResponseCodeTable
from monitor.pipeline.decoder import Rejection
from monitor.pipeline.processor import STAGES, BatchProcessor
from monitor.pipeline.selection import AlertPolicy
from monitor.pipeline.vips import RegistryLoader
from tests.helpers import encode, event, write_registry

MANAGERS = """
manager_id,name,email,timezone
M1,Alice Martin,alice@bank.example,Europe/Paris
M2,Bob Chen,bob@bank.example,Asia/Singapore
"""
CUSTOMERS = """
customer_id,name,tier,manager_id,card_refs
C-001,Ada Lovelace,private,M1,tok_ada
C-002,Blaise Pascal,gold,M2,tok_blaise
C-003,Carl Gauss,platinum,M1,tok_carl
"""
ALICE = Manager(manager_id="M1", name="Alice Martin", email="alice@bank.example", timezone="Europe/Paris")
BOB = Manager(manager_id="M2", name="Bob Chen", email="bob@bank.example", timezone="Asia/Singapore")
WHEN = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)  # the helpers' default 10:15+01:00


@pytest.fixture(scope="module")
def codes() -> ResponseCodeTable:
    """The shipped response-code table."""
    return ResponseCodeTable.load(rules_path("response_codes.yaml"))


@pytest.fixture(scope="module")
def policy() -> AlertPolicy:
    """The shipped alert policy."""
    return AlertPolicy.load(rules_path("alerting.yaml"))


@pytest.fixture
def loader(tmp_path: Path) -> RegistryLoader:
    """A loaded registry of three VIP clients (private, gold, platinum)."""
    registry = RegistryLoader(*write_registry(tmp_path, CUSTOMERS, MANAGERS))
    registry.load()
    return registry


class RecordingMetrics:
    """Keeps the event IDs of every frame it is given; raises for frames holding ``breaking_event``."""

    def __init__(self, breaking_event: str | None = None) -> None:
        self.breaking_event = breaking_event
        self.batches: list[list[str]] = []
        self.sanitised: dict[tuple[str, str], int] = {}

    def observe_batch(self, frame: pl.DataFrame) -> None:
        """Record the batch, or raise like a bug would for one particular event."""
        event_ids = frame.get_column("event_id").to_list()
        if self.breaking_event in event_ids:
            raise ZeroDivisionError("a bug triggered by one event")
        self.batches.append(event_ids)

    def observe_sanitised(self, changes: Mapping[tuple[str, str], int]) -> None:
        """Add up the decoder's cleaned-field counts."""
        for key, count in changes.items():
            self.sanitised[key] = self.sanitised.get(key, 0) + count

    def observe_late(self, count: int) -> None:
        """Late events are not what these tests look at."""


def alert_event(event_id: str, *, response_code: str | None, outcome: str, meaning: str,
                occurred_at: datetime = WHEN, card_ref: str = "tok-card-1", **fields: object) -> AlertEvent:
    """The AlertEvent a helpers.event() dict with these fields should become."""
    values: dict[str, object] = {
        "event_id": event_id, "occurred_at": occurred_at, "channel": "ATM", "terminal_id": "ATM00042",
        "merchant_id": None, "txn_type": "withdrawal", "amount_minor": 20000, "currency": "EUR",
        "response_code": response_code, "outcome": outcome, "response_meaning": meaning,
        "status": "completed", "card_ref": card_ref, "latency_ms": 420.0, "city": "Lyon",
    }
    values.update(fields)
    return AlertEvent(**values)  # type: ignore[arg-type]


def test_mixed_batch_gives_exact_failures_and_rejections(
    codes: ResponseCodeTable, policy: AlertPolicy, loader: RegistryLoader,
) -> None:
    """A batch mixing VIP/non-VIP, approved/failed, a timeout, a raw PAN and junk yields exactly the alerting VIP failures."""
    timeout = event("e3-timeout", card_ref="tok_blaise", status="timeout", latency_ms=30012.0)
    del timeout["response_code"]
    values: list[bytes | None] = [
        encode(event("e0-approved", customer_id="C-001", response_code="00")),
        encode(event("e1-funds", customer_id="C-001", response_code="51", channel="POS",
                     terminal_id="POS00007", txn_type="purchase", amount_minor=125050,
                     merchant_id="MER-12", entry_mode="contactless")),
        encode(event("e2-expired", card_ref="tok_blaise", response_code="54")),  # gold: card never alerts
        encode(timeout),                                                     # gold: timeout alerts
        encode(event("e4-nonvip", customer_id="C-404", card_ref="tok_nobody", response_code="91")),
        encode(event("e5-pan", customer_id="C-001", response_code="59", pan="4111111111111111")),
        b"{not json",
        encode(event("e7-offset", card_ref="tok_carl", response_code="91",
                     occurred_at="2026-03-02T10:15:00+02:00", currency="CHF", amount_minor=5000)),
        encode(event("e8-customer", card_ref="tok_carl", response_code="55")),  # platinum: customer never alerts
    ]
    metrics = RecordingMetrics()
    processor = BatchProcessor(codes=codes, policy=policy, registry=loader, metrics=metrics)
    result = processor.process(values)

    assert result.events == 8
    assert [(r.index, r.reason) for r in result.rejections] == [(5, "raw_pan"), (6, "invalid_json")]
    assert metrics.batches == [["e0-approved", "e1-funds", "e2-expired", "e3-timeout", "e4-nonvip",
                                "e5-pan", "e7-offset", "e8-customer"]]
    assert result.failures == [
        VipFailure(
            event=alert_event("e1-funds", response_code="51", outcome="customer", meaning="Not sufficient funds",
                              channel="POS", terminal_id="POS00007", txn_type="purchase", amount_minor=125050,
                              merchant_id="MER-12", entry_mode="contactless"),
            customer_id="C-001", customer_name="Ada Lovelace", tier="private", manager=ALICE,
            severity="low", suggested_action=codes.action("51"),
        ),
        VipFailure(
            event=alert_event("e3-timeout", response_code=None, outcome="technical",
                              meaning="No response from issuer/switch (timeout)", status="timeout",
                              card_ref="tok_blaise", latency_ms=30012.0),
            customer_id="C-002", customer_name="Blaise Pascal", tier="gold", manager=BOB,
            severity="high", suggested_action=codes.action(None, "timeout"),
        ),
        VipFailure(
            event=alert_event("e5-pan", response_code="59", outcome="fraud", meaning="Suspected fraud",
                              pan_masked="411111******1111"),
            customer_id="C-001", customer_name="Ada Lovelace", tier="private", manager=ALICE,
            severity="high", suggested_action=codes.action("59"),
        ),
        VipFailure(
            event=alert_event("e7-offset", response_code="91", outcome="technical",
                              meaning="Issuer or switch is inoperative", card_ref="tok_carl",
                              occurred_at=datetime(2026, 3, 2, 8, 15, tzinfo=UTC),
                              currency="CHF", amount_minor=5000),
            customer_id="C-003", customer_name="Carl Gauss", tier="platinum", manager=ALICE,
            severity="high", suggested_action=codes.action("91"),
        ),
    ]
    # The actions are the table's own words for the code (the timeout one for the timeout).
    actions = [f.suggested_action for f in result.failures]
    assert actions[0].startswith("Client had insufficient funds")
    assert actions[1].startswith("The bank's systems got no answer in time")
    assert actions[2].startswith("Declined for suspected fraud")
    assert actions[3].startswith("Issuer or switch was unavailable")
    assert "4111111111111111" not in repr(result)


def test_event_times_are_utc_and_aware_in_alert_events(
    codes: ResponseCodeTable, policy: AlertPolicy, loader: RegistryLoader,
) -> None:
    """An event stamped 10:15+02:00 reaches its AlertEvent as 08:15 UTC, still timezone-aware."""
    processor = BatchProcessor(codes=codes, policy=policy, registry=loader)
    result = processor.process([encode(event("e1", customer_id="C-001", response_code="96",
                                             occurred_at="2026-03-02T10:15:00.250+02:00"))])
    occurred = result.failures[0].event.occurred_at
    assert occurred.tzinfo is not None
    assert occurred.utcoffset() == timedelta(0)
    assert (occurred.hour, occurred.minute, occurred.microsecond) == (8, 15, 250_000)


def test_batch_without_valid_events_skips_metrics(
    codes: ResponseCodeTable, policy: AlertPolicy, loader: RegistryLoader,
) -> None:
    """A batch of only bad messages gives rejections with their batch indices and no metrics call."""
    metrics = RecordingMetrics()
    processor = BatchProcessor(codes=codes, policy=policy, registry=loader, metrics=metrics)
    result = processor.process([None, b"[1]", encode(event("e2", currency="XYZ"))])
    assert [(r.index, r.reason) for r in result.rejections] == [
        (0, "invalid_json"), (1, "not_an_object"), (2, "unknown_currency")]
    assert result.failures == [] and result.events == 0
    assert metrics.batches == []


def test_a_breaking_message_is_isolated(
    codes: ResponseCodeTable, policy: AlertPolicy, loader: RegistryLoader,
) -> None:
    """When processing the batch raises because of one event, the others are processed and it becomes processing_error."""
    metrics = RecordingMetrics(breaking_event="e2-boom")
    processor = BatchProcessor(codes=codes, policy=policy, registry=loader, metrics=metrics)
    result = processor.process([
        encode(event("e0", customer_id="C-001", response_code="91")),
        b"not json",
        encode(event("e2-boom", customer_id="C-001", response_code="91")),
        encode(event("e3", customer_id="C-002", response_code="96", pan="4111111111111111")),
        encode(event("e4", response_code="00")),
    ])
    assert [(r.index, r.reason) for r in result.rejections] == [
        (1, "invalid_json"), (2, "processing_error"), (3, "raw_pan")]
    assert result.rejections[1] == Rejection(2, "processing_error", "ZeroDivisionError while processing")
    assert [(f.event.event_id, f.customer_id, f.severity) for f in result.failures] == [
        ("e0", "C-001", "high"), ("e3", "C-002", "high")]
    assert result.events == 3
    assert metrics.batches == [["e0"], ["e3"], ["e4"]]


@dataclass(frozen=True, slots=True)
class BreakingPolicy(AlertPolicy):
    """The shipped policy, except that selecting a frame holding ``e2-boom`` raises (a bug)."""

    def select_plan(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """Raise for the breaking event, else behave like the real policy (the processor plans the selection)."""
        if "e2-boom" in frame.collect().get_column("event_id").to_list():
            raise KeyError("a bug triggered by one event")
        return AlertPolicy.select_plan(self, frame)


def test_isolation_never_counts_an_event_twice(
    codes: ResponseCodeTable, policy: AlertPolicy, loader: RegistryLoader,
) -> None:
    """When the batch breaks after classification, metrics still see each good event exactly once."""
    breaking = BreakingPolicy(policy.grouping_window_seconds, policy.table, policy.tiers, policy.actions)
    metrics = RecordingMetrics()
    processor = BatchProcessor(codes=codes, policy=breaking, registry=loader, metrics=metrics)
    result = processor.process([
        encode(event("e0", customer_id="C-001", response_code="05")),
        encode(event("e1", response_code="00")),
        encode(event("e2-boom", customer_id="C-001", response_code="91")),
    ])
    assert [(r.index, r.reason) for r in result.rejections] == [(2, "processing_error")]
    assert [f.event.event_id for f in result.failures] == ["e0"]
    assert metrics.batches == [["e0"], ["e1"]]


def test_empty_registry_counts_but_never_alerts(codes: ResponseCodeTable, policy: AlertPolicy) -> None:
    """With no registry configured every event is counted and no failure alerts."""
    metrics = RecordingMetrics()
    processor = BatchProcessor(codes=codes, policy=policy, registry=RegistryLoader(None, None), metrics=metrics)
    result = processor.process([encode(event("e0", customer_id="C-001", response_code="91"))])
    assert result.failures == [] and result.events == 1
    assert metrics.batches == [["e0"]]


def test_a_vip_failure_at_a_merchant_whose_name_holds_a_newline_reaches_its_manager(
    codes: ResponseCodeTable, policy: AlertPolicy, loader: RegistryLoader, tmp_path: Path,
) -> None:
    """A merchant name with a newline, tab and a dotted PAN is cleaned and counted; the VIP failure alerts its manager."""
    metrics = RecordingMetrics()
    processor = BatchProcessor(codes=codes, policy=policy, registry=loader, metrics=metrics)
    result = processor.process([encode(event(
        "e-newline", customer_id="C-001", response_code="91", channel="POS", terminal_id="POS00007",
        txn_type="purchase", merchant_id="MER-12",
        merchant_name="CAFE DU PORT\nLYON\tFR ref 4111.1111.1111.1111"))])
    assert result.rejections == [] and result.events == 1
    (failure,) = result.failures
    assert failure.manager == ALICE
    assert failure.event.merchant_name == "CAFE DU PORT LYON FR ref 411111******1111"
    assert metrics.sanitised == {("merchant_name", "text"): 1, ("merchant_name", "pan"): 1}

    with AlertStore(tmp_path / "alerts.db") as store:
        recorded = store.record(result.failures)
        assert recorded.deliveries_enqueued == 1
        (delivery,) = store.claim_due(datetime.now(UTC) + timedelta(hours=1))
        message = render_delivery(store, delivery)
    assert message.email == "alice@bank.example"
    assert "Ada Lovelace" in message.text and "4111111111111111" not in message.text


def test_stage_seconds_add_up_every_stage_of_each_batch(
    codes: ResponseCodeTable, policy: AlertPolicy, loader: RegistryLoader,
) -> None:
    """Every stage of a processed batch has its time added to ``stage_seconds``, and nothing else appears there."""
    processor = BatchProcessor(codes=codes, policy=policy, registry=loader, metrics=RecordingMetrics())
    assert processor.stage_seconds == dict.fromkeys(STAGES, 0.0)
    processor.process([encode(event("e1", customer_id="C-001", response_code="91"))])
    first = dict(processor.stage_seconds)
    assert list(first) == list(STAGES) and all(seconds > 0 for seconds in first.values())
    processor.process([encode(event("e2"))])
    assert all(processor.stage_seconds[stage] > first[stage] for stage in STAGES)
