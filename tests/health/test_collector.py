"""The health collector: per-terminal state, fleet counts, components, groups and top-N at scrape time."""

from __future__ import annotations

import subprocess
from datetime import datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from monitor.health.collector import HealthCollector
from monitor.health.device_status import DeviceStatusEvent
from monitor.health.state import HealthBook
from tests.health.conftest import Batch, at


def _status(terminal_id: str, component: str, state: str, when: datetime) -> DeviceStatusEvent:
    return DeviceStatusEvent(event_id=f"{terminal_id}-{component}", occurred_at=when, terminal_id=terminal_id,
                             component=component, state=state)  # type: ignore[arg-type]


@pytest.fixture
def scraped(batch: Batch) -> tuple[HealthBook, CollectorRegistry]:
    """A book with an ok, a failing, a silent and an offline terminal, evaluated and registered."""
    book = HealthBook()
    rows = [{"terminal_id": "OK1", "at": i, "region": "north", "merchant_id": "M1"} for i in range(30)]
    rows += [{"terminal_id": "BAD", "at": i, "outcome": "technical", "region": "north"} for i in range(20)]
    rows += [{"terminal_id": "BAD", "at": 30 + i, "region": "north"} for i in range(5)]
    rows += [{"terminal_id": "QUIET", "at": 1, "region": "south"}]
    book.observe(batch(rows), now=at(60))
    book.apply_status([_status("ATM9", "network", "offline", at(5)), _status("ATM9", "cassette", "low", at(5))])
    book.mark_silent({"QUIET"}, at(60))
    book.evaluate(at(60))
    registry = CollectorRegistry()
    registry.register(HealthCollector(book))
    return book, registry


def test_one_health_state_series_per_terminal(scraped: tuple[HealthBook, CollectorRegistry]) -> None:
    """cardmon_terminal_health_state has each terminal's state value and nothing else per terminal."""
    _, registry = scraped
    value = registry.get_sample_value
    assert value("cardmon_terminal_health_state", {"terminal_id": "OK1"}) == 0
    assert value("cardmon_terminal_health_state", {"terminal_id": "BAD"}) == 2
    assert value("cardmon_terminal_health_state", {"terminal_id": "QUIET"}) == 3
    assert value("cardmon_terminal_health_state", {"terminal_id": "ATM9"}) == 4
    text = generate_latest(registry).decode()
    assert text.count("cardmon_terminal_health_state{") == 4


def test_fleet_counts_and_non_ok_components(scraped: tuple[HealthBook, CollectorRegistry]) -> None:
    """cardmon_terminals counts every state (zeros too); component series exist only for non-ok components."""
    _, registry = scraped
    value = registry.get_sample_value
    counts = {s: value("cardmon_terminals", {"state": s}) for s in ("ok", "degraded", "failing", "silent", "offline")}
    assert counts == {"ok": 1, "degraded": 0, "failing": 1, "silent": 1, "offline": 1}
    labels = {"terminal_id": "ATM9", "component": "network", "state": "offline"}
    assert value("cardmon_terminal_component_state", labels) == 1
    assert value("cardmon_terminal_component_state", {**labels, "component": "cassette", "state": "low"}) == 1
    assert generate_latest(registry).decode().count("cardmon_terminal_component_state{") == 2


def test_group_and_worst_terminal_series(scraped: tuple[HealthBook, CollectorRegistry]) -> None:
    """Group volume and failure ratio per dimension and window; the worst terminal ranks first."""
    _, registry = scraped
    value = registry.get_sample_value
    north = {"dimension": "region", "group": "north", "window": "5m"}
    assert value("cardmon_group_transactions", north) == 55
    assert value("cardmon_group_failure_ratio", north) == pytest.approx(20 / 55)
    assert value("cardmon_group_transactions", {**north, "group": "south", "window": "1h"}) == 1
    assert value("cardmon_group_failure_ratio", {**north, "group": "south", "window": "1h"}) == 0
    assert value("cardmon_group_transactions", {"dimension": "model", "group": "unknown", "window": "1h"}) == 56
    assert value("cardmon_worst_terminal_failure_ratio", {"rank": "1", "terminal_id": "BAD"}) == pytest.approx(0.8)
    assert value("cardmon_worst_terminal_failure_ratio", {"rank": "2", "terminal_id": "OK1"}) is None


def test_terminal_states_can_be_left_to_a_faster_path(scraped: tuple[HealthBook, CollectorRegistry]) -> None:
    """With terminal_states=False the per-terminal family is absent and terminal_state_frame carries it instead."""
    book, _ = scraped
    registry = CollectorRegistry()
    collector = HealthCollector(book, terminal_states=False)
    registry.register(collector)
    assert "cardmon_terminal_health_state" not in generate_latest(registry).decode()
    assert registry.get_sample_value("cardmon_terminals", {"state": "failing"}) == 1
    assert collector.terminal_state_frame().rows() == [("ATM9", 4), ("BAD", 2), ("OK1", 0), ("QUIET", 3)]


def test_exposition_passes_promtool(scraped: tuple[HealthBook, CollectorRegistry], promtool: str) -> None:
    """promtool check metrics accepts the exposition (names, HELP, types, units)."""
    _, registry = scraped
    result = subprocess.run([promtool, "check", "metrics"], input=generate_latest(registry),
                            capture_output=True, check=False)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_a_scrape_before_any_evaluation_is_valid() -> None:
    """An unevaluated book exposes zero counts and no per-terminal series."""
    registry = CollectorRegistry()
    registry.register(HealthCollector(HealthBook()))
    assert registry.get_sample_value("cardmon_terminals", {"state": "ok"}) == 0
    assert "cardmon_terminal_health_state{" not in generate_latest(registry).decode()
