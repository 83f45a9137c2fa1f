"""The synthetic fleet: determinism, traffic shape, injected faults and the VIP registry."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import msgspec
import polars as pl
import pytest

from monitor.pipeline.decoder import decode_batch
from simulators import traffic
from simulators.faults import IssuerOutage, TerminalFault
from simulators.fleet import build_fleet, write_registry
from simulators.sources.synthetic import default_faults, synthetic_events

START = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def _offset(event: dict) -> float:
    return (datetime.fromisoformat(event["occurred_at"]) - START).total_seconds()


def test_same_seed_same_events() -> None:
    """The same seed, start and rate give identical events; another seed gives others."""
    def run(seed: int) -> list[dict]:
        fleet = build_fleet(seed=seed)
        return list(synthetic_events(fleet, start=START, duration_s=10,
                                     faults=default_faults(fleet, 10), seed=seed))
    first, again, other = run(7), run(7), run(8)
    assert len(first) > 1_000
    assert first == again
    assert [e["card_ref"] for e in first[:50]] != [e["card_ref"] for e in other[:50]]


def test_fleet_shape() -> None:
    """Terminal IDs are 8 characters; ATMs carry a branch, POS terminals a 15-digit merchant ID."""
    fleet = build_fleet(terminals=50, customers=300, vips=20)
    assert len(fleet.terminals) == 50
    assert len({t.terminal_id for t in fleet.terminals}) == 50
    assert all(len(t.terminal_id) == 8 for t in fleet.terminals)
    channels = Counter(t.channel for t in fleet.terminals)
    assert channels == {"ATM": 15, "POS": 35}
    for terminal in fleet.terminals:
        if terminal.channel == "ATM":
            assert terminal.branch_id and terminal.merchant_id is None
        else:
            assert terminal.merchant_id and len(terminal.merchant_id) == 15
    assert len(fleet.vips) == 20
    assert {v.tier for v in fleet.vips} <= {"private", "platinum", "gold"}
    refs = [card.card_ref for customer in fleet.customers for card in customer.cards]
    assert len(refs) == len(set(refs))


def test_normal_traffic_is_realistic() -> None:
    """Without faults, most transactions are approved, a few decline with 51/55/05/54, latency ~300 ms."""
    fleet = build_fleet()
    events = list(synthetic_events(fleet, start=START, duration_s=60, rate=200))
    assert 11_000 < len(events) < 13_000  # Poisson arrivals at 200/s for 60 s
    codes = Counter(e["response_code"] for e in events)
    assert codes["00"] / len(events) > 0.95
    assert set(codes) == {"00", "51", "55", "05", "54"}
    assert all(e["status"] == "completed" for e in events)
    pos = [e for e in events if e["channel"] == "POS"]
    atm = [e for e in events if e["channel"] == "ATM"]
    assert {e["txn_type"] for e in pos} == {"purchase"}
    assert {e["entry_mode"] for e in pos} == {"chip", "contactless", "swipe"}
    assert {e["txn_type"] for e in atm} == {"withdrawal", "balance_inquiry"}
    assert all("merchant_id" in e for e in pos) and not any("merchant_id" in e for e in atm)
    assert 250 < statistics.median(e["latency_ms"] for e in pos) < 350
    offsets = [_offset(e) for e in events]
    assert offsets == sorted(offsets) and 0 <= offsets[0] and offsets[-1] < 60


def test_events_pass_the_decoder() -> None:
    """Every generated event, faults included, is a valid contract-v1 message."""
    fleet = build_fleet()
    events = list(synthetic_events(fleet, start=START, duration_s=30, faults=default_faults(fleet, 30)))
    batch = decode_batch([msgspec.json.encode(e) for e in events])
    assert batch.rejections == []
    assert len(batch.events) == len(events)
    assert len({e.event_id for e in batch.events}) == len(events)


def test_terminal_fault_window() -> None:
    """A faulty terminal fails every transaction inside its window and none outside because of it."""
    fleet = build_fleet()
    atm = fleet.terminals[0].terminal_id
    pos = fleet.terminals[-1].terminal_id
    faults = [TerminalFault(terminal_id=atm, start_s=10, end_s=20, response_code=None),
              TerminalFault(terminal_id=pos, start_s=5, end_s=15)]
    events = list(synthetic_events(fleet, start=START, duration_s=30, faults=faults))
    at_atm = [e for e in events if e["terminal_id"] == atm]
    inside = [e for e in at_atm if 10 <= _offset(e) < 20]
    outside = [e for e in at_atm if not 10 <= _offset(e) < 20]
    assert len(inside) > 20
    assert all(e["status"] == "timeout" and "response_code" not in e for e in inside)
    assert all(e["latency_ms"] == traffic.AUTHORIZATION_TIMEOUT_MS for e in inside)
    assert all(e["status"] == "completed" for e in outside)
    at_pos = [e for e in events if e["terminal_id"] == pos]
    assert {e["response_code"] for e in at_pos if 5 <= _offset(e) < 15} == {"58"}
    assert "58" not in {e["response_code"] for e in at_pos if not 5 <= _offset(e) < 15}
    others = [e for e in events if e["terminal_id"] not in (atm, pos)]
    assert all(e["status"] == "completed" and e["response_code"] != "58" for e in others)


def test_issuer_outage_window() -> None:
    """An issuer outage gives 91 to about its share of all transactions inside its window only."""
    fleet = build_fleet()
    events = list(synthetic_events(fleet, start=START, duration_s=30,
                                   faults=[IssuerOutage(start_s=10, duration_s=5, share=0.7)]))
    inside = [e for e in events if 10 <= _offset(e) < 15]
    share = sum(e["response_code"] == "91" for e in inside) / len(inside)
    assert 0.6 < share < 0.8
    assert {e["terminal_id"] for e in inside if e["response_code"] == "91"} == {
        t.terminal_id for t in fleet.terminals
    }
    assert not any(e["response_code"] == "91" for e in events if not 10 <= _offset(e) < 15)
    assert min(e["latency_ms"] for e in inside if e["response_code"] == "91") > 3_000


def test_short_demo_shows_vip_failures() -> None:
    """A 30 s demo at 200 events/s with the default faults has several failed VIP transactions."""
    fleet = build_fleet()
    vips = {c.customer_id for c in fleet.vips}
    events = list(synthetic_events(fleet, start=START, duration_s=30, faults=default_faults(fleet, 30)))
    failures = [e for e in events if e["customer_id"] in vips and e.get("response_code") != "00"]
    assert len(failures) >= 5
    assert len({e["customer_id"] for e in failures}) >= 3


def test_generator_is_infinite_without_duration() -> None:
    """With no duration the traffic goes on; time keeps moving forward."""
    events = list(islice(synthetic_events(build_fleet(), start=START, rate=1_000), 50_000))
    assert len(events) == 50_000
    assert _offset(events[-1]) > 40


def test_naive_start_is_refused() -> None:
    """A naive start time raises instead of producing naive timestamps."""
    with pytest.raises(ValueError, match="timezone-aware"):
        next(synthetic_events(build_fleet(), start=START.replace(tzinfo=None)))


def test_registry_csv_files(tmp_path: Path) -> None:
    """The VIP registry is written as customers.csv and managers.csv with the registry's columns."""
    fleet = build_fleet(vips=12, managers=3, webhook_base_url="http://127.0.0.1:8099/hooks/")
    customers_path, managers_path = write_registry(fleet, tmp_path / "registry")
    customers = pl.read_csv(customers_path, infer_schema=False)
    managers = pl.read_csv(managers_path, infer_schema=False)
    assert customers.columns == ["customer_id", "name", "tier", "manager_id", "card_refs"]
    assert managers.columns == ["manager_id", "name", "email", "phone", "webhook_url",
                                "backup_manager_id", "timezone", "locale", "recovery_follow_up"]
    assert managers["recovery_follow_up"].to_list() == ["no", "no", "no"]  # nobody opted in
    assert customers.height == 12
    assert set(customers["tier"]) <= {"private", "platinum", "gold"}
    assert set(customers["manager_id"]) <= set(managers["manager_id"])
    by_id = {c.customer_id: c for c in fleet.vips}
    for row in customers.iter_rows(named=True):
        assert row["card_refs"].split(";") == [card.card_ref for card in by_id[row["customer_id"]].cards]
    assert managers["webhook_url"].to_list() == [
        f"http://127.0.0.1:8099/hooks/RM{i:03d}" for i in (1, 2, 3)
    ]
    assert managers["backup_manager_id"].to_list() == ["RM002", "RM003", "RM001"]
    assert all(email.isascii() for email in managers["email"])


def test_registry_is_readable_by_the_monitor(tmp_path: Path) -> None:
    """The monitor's registry reader accepts the written files and finds VIPs by card."""
    registry = pytest.importorskip("monitor.pipeline.vips")
    fleet = build_fleet()
    loaded = registry.read_registry(*write_registry(fleet, tmp_path))
    assert len(loaded) == len(fleet.vips)
    vip = fleet.vips[0]
    frame = pl.DataFrame({"customer_id": [None], "card_ref": [vip.cards[-1].card_ref]},
                         schema={"customer_id": pl.String, "card_ref": pl.String})
    assert loaded.lookup(frame)["vip_customer_id"].to_list() == [vip.customer_id]
