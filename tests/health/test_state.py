"""Health states: each rule, the precedence, status and silent inputs, recovery and retention."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from monitor.health.device_status import DeviceStatusEvent
from monitor.health.state import HealthBook, HealthRules
from monitor.health.state_rules import HealthState
from monitor.health.terminals import TerminalRegistryLoader
from tests.health.conftest import Batch, at

RULES_FILE = Path(__file__).resolve().parents[2] / "rules" / "health.yaml"


def _status(terminal_id: str, component: str, state: str, when: datetime, n: int = 0) -> DeviceStatusEvent:
    return DeviceStatusEvent(event_id=f"s{n}-{component}-{state}", occurred_at=when, terminal_id=terminal_id,
                             component=component, state=state)  # type: ignore[arg-type]


def _state(book: HealthBook, terminal_id: str = "T1") -> tuple[HealthState, list[str]]:
    found = book.state_of(terminal_id)
    assert found is not None, f"{terminal_id} not in the book"
    return found


def _traffic(terminal_id: str, start: float, count: int, outcome: str = "approved", step: float = 1.0,
             **fields: object) -> list[dict[str, object]]:
    return [{"terminal_id": terminal_id, "at": start + i * step, "outcome": outcome, **fields}
            for i in range(count)]


@pytest.fixture
def book() -> HealthBook:
    """A book with the rules of the repository's rules/health.yaml."""
    return HealthBook(HealthRules.load(RULES_FILE))


def test_rules_file_matches_the_documented_defaults() -> None:
    """rules/health.yaml holds the thresholds the docs state (failing 0.5 over 10, degraded 0.2 over 20, 7 days)."""
    rules = HealthRules.load(RULES_FILE)
    assert rules == HealthRules()
    assert (rules.state.failing_ratio, rules.state.failing_min_volume) == (0.5, 10)
    assert rules.state.retention_seconds == 7 * 24 * 3600


def test_failing_on_technical_ratio_with_minimum_volume(book: HealthBook, batch: Batch) -> None:
    """Half the 5 m volume failing for technical/terminal reasons makes a terminal failing, with the numbers as reason."""
    book.observe(batch(_traffic("T1", 0, 2) + _traffic("T1", 2, 10, "technical", step=0.1)
                       + _traffic("T1", 3, 2, step=10) + _traffic("FEW", 0, 3, "technical", step=10)
                       + _traffic("FEW", 40, 1)), now=at(60))
    book.evaluate(at(60))
    state, reasons = _state(book)
    assert state is HealthState.FAILING
    assert reasons == ["5m technical+terminal ratio 0.71 over 14 txns"]
    assert _state(book, "FEW")[0] is HealthState.OK  # 3 of 4 failed, below the minimum volume


def test_failing_on_consecutive_technical_failures(book: HealthBook, batch: Batch) -> None:
    """Five technical failures in a row make a terminal failing whatever its volume."""
    book.observe(batch(_traffic("T1", 0, 30) + _traffic("T1", 40, 5, "technical")), now=at(60))
    book.evaluate(at(60))
    assert _state(book) == (HealthState.FAILING, ["5 consecutive technical failures"])


def test_degraded_rules_over_the_hour(book: HealthBook, batch: Batch) -> None:
    """1 h failure ratio, latency p99 and swipe fallbacks each make a terminal degraded; below min volume they do not."""
    rows = _traffic("RATIO", 0, 16, step=60) + _traffic("RATIO", 1, 2, "card", step=600) \
        + _traffic("RATIO", 2, 2, "technical", step=600) + _traffic("RATIO", 3, 1, "terminal")
    rows += _traffic("SLOW", 0, 19, latency_ms=200.0, step=60) + _traffic("SLOW", 1, 2, latency_ms=9000.0)
    rows += _traffic("FALLBACK", 0, 18, step=60) + _traffic("FALLBACK", 1, 3, entry_mode="fallback", step=60)
    rows += _traffic("QUIET", 0, 5, "card", step=60)
    book.observe(batch(rows), now=at(3000))
    book.evaluate(at(3000))
    assert _state(book, "RATIO") == (HealthState.DEGRADED, ["1h technical+terminal+card ratio 0.24 over 21 txns"])
    state, reasons = _state(book, "SLOW")
    assert state is HealthState.DEGRADED
    assert len(reasons) == 1
    assert reasons[0].startswith("1h latency p99 ")
    assert reasons[0].endswith(" s over 21 txns")
    assert _state(book, "FALLBACK") == (HealthState.DEGRADED,
                                        ["1h chip fallback ratio 0.14 over 21 chip+fallback reads"])
    assert _state(book, "QUIET") == (HealthState.OK, [])


def test_component_status_sets_offline_failing_and_degraded(book: HealthBook, batch: Batch) -> None:
    """Network offline → offline, card reader fault → failing, cassette low → degraded; ok clears the component."""
    book.observe(batch(_traffic("ATM1", 0, 3) + _traffic("ATM2", 0, 3) + _traffic("ATM3", 0, 3)), now=at(60))
    book.apply_status([_status("ATM1", "network", "offline", at(10)),
                       _status("ATM2", "card_reader", "fault", at(10)),
                       _status("ATM3", "cassette", "low", at(10)),
                       _status("ATM3", "receipt_printer", "empty", at(11))])
    book.evaluate(at(60))
    assert _state(book, "ATM1") == (HealthState.OFFLINE, ["network offline"])
    assert _state(book, "ATM2") == (HealthState.FAILING, ["card_reader fault"])
    assert _state(book, "ATM3") == (HealthState.DEGRADED, ["cassette low", "receipt_printer empty"])
    assert sorted(book.components()) == [("ATM1", "network", "offline"), ("ATM2", "card_reader", "fault"),
                                         ("ATM3", "cassette", "low"), ("ATM3", "receipt_printer", "empty")]
    book.apply_status([_status("ATM1", "network", "ok", at(20)),
                       _status("ATM2", "card_reader", "ok", at(5)),  # older than the fault: ignored
                       _status("ATM3", "cassette", "ok", at(20))])
    book.evaluate(at(60))
    assert _state(book, "ATM1") == (HealthState.OK, [])
    assert _state(book, "ATM2")[0] is HealthState.FAILING
    assert _state(book, "ATM3") == (HealthState.DEGRADED, ["receipt_printer empty"])


def test_a_terminal_known_only_from_status_is_in_the_book(book: HealthBook) -> None:
    """A terminal that only ever sent a device status event still gets a state."""
    book.apply_status([_status("NEW", "network", "offline", at(0))])
    book.evaluate(at(60))
    assert _state(book, "NEW") == (HealthState.OFFLINE, ["network offline"])


def test_silent_marks_replace_the_previous_set(book: HealthBook, batch: Batch) -> None:
    """The detector's result is the whole silent set: a terminal not in the next result is no longer silent."""
    book.observe(batch(_traffic("T1", 0, 3) + _traffic("T2", 0, 3)), now=at(60))
    book.mark_silent({"T1", "BASELINE_ONLY"}, at(1000))
    book.evaluate(at(1000))
    assert _state(book) == (HealthState.SILENT, ["silent since 2026-03-02T08:16:40Z"])
    assert _state(book, "BASELINE_ONLY")[0] is HealthState.SILENT
    book.mark_silent({"T2"}, at(1060))
    book.evaluate(at(1060))
    assert _state(book)[0] is HealthState.OK
    assert _state(book, "T2") == (HealthState.SILENT, ["silent since 2026-03-02T08:17:40Z"])


def test_precedence_offline_over_silent_over_failing(book: HealthBook, batch: Batch) -> None:
    """A failing terminal that goes silent is silent, and offline once its network reports offline; reasons keep all rules."""
    book.observe(batch(_traffic("T1", 0, 20, "technical")), now=at(60))
    book.evaluate(at(60))
    assert _state(book)[0] is HealthState.FAILING
    book.mark_silent({"T1"}, at(70))
    book.evaluate(at(70))
    assert _state(book)[0] is HealthState.SILENT
    book.apply_status([_status("T1", "network", "offline", at(65)),
                       _status("T1", "cassette", "empty", at(65))])
    book.evaluate(at(70))
    state, reasons = _state(book)
    assert state is HealthState.OFFLINE
    assert reasons == ["network offline", "silent since 2026-03-02T08:01:10Z",
                       "5m technical+terminal ratio 1.0 over 20 txns", "20 consecutive technical failures",
                       "1h technical+terminal+card ratio 1.0 over 20 txns", "cassette empty"]
    assert book.states_count() == {HealthState.OK: 0, HealthState.DEGRADED: 0, HealthState.FAILING: 0,
                                   HealthState.SILENT: 0, HealthState.OFFLINE: 1}


def test_a_recovered_terminal_returns_to_ok_once_the_windows_pass(book: HealthBook, batch: Batch) -> None:
    """After its failures leave the 5 m window it is degraded by the 1 h ratio, and ok once they leave the hour."""
    book.observe(batch(_traffic("T1", 0, 12, "technical", step=5) + _traffic("T1", 60, 10, step=5)), now=at(120))
    book.evaluate(at(120))
    assert _state(book)[0] is HealthState.FAILING
    book.observe(batch(_traffic("T1", 300, 30, step=5)), now=at(500))  # healthy traffic 5 min later
    book.evaluate(at(500))
    assert _state(book) == (HealthState.DEGRADED, ["1h technical+terminal+card ratio 0.23 over 52 txns"])
    book.observe(batch(_traffic("T1", 3700, 30, step=5)), now=at(3900))
    book.evaluate(at(3900))
    assert _state(book) == (HealthState.OK, [])


def test_windows_end_at_the_event_time_watermark(book: HealthBook, batch: Batch) -> None:
    """With the consumer behind, the 5 m window ends at the latest event time, not at the wall clock."""
    book.observe(batch(_traffic("T1", 0, 12, "technical")), now=at(60))
    book.evaluate(at(3600))  # an hour of wall clock later, no newer event
    assert _state(book)[0] is HealthState.FAILING


def test_terminals_drop_out_after_retention_or_when_decommissioned(tmp_path: Path, batch: Batch) -> None:
    """No sign of life for 7 days drops a terminal; a decommissioned one drops at once; new traffic brings it back."""
    registry_file = tmp_path / "terminals.csv"
    registry_file.write_text("terminal_id,status\nOLD,active\nGONE,decommissioned\nLIVE,active\n")
    loader = TerminalRegistryLoader(registry_file)
    loader.load()
    book = HealthBook(registry=loader)
    book.observe(batch(_traffic("OLD", 0, 2) + _traffic("GONE", 0, 2) + _traffic("LIVE", 0, 2)), now=at(60))
    book.apply_status([_status("OLD", "cassette", "low", at(30))])
    book.evaluate(at(60))
    assert {r[0] for r in book.snapshot().select("terminal_id").iter_rows()} == {"OLD", "LIVE"}
    week = 7 * 24 * 3600
    book.observe(batch(_traffic("LIVE", week, 1)), now=at(week + 60))
    book.mark_silent({"OLD"}, at(week + 60))  # a silent mark is no sign of life past retention
    book.evaluate(at(week + 60))
    assert book.snapshot().get_column("terminal_id").to_list() == ["LIVE"]
    assert book.components() == []
    book.observe(batch(_traffic("OLD", week + 100, 1)), now=at(week + 200))
    book.evaluate(at(week + 200))
    assert book.snapshot().get_column("terminal_id").to_list() == ["LIVE", "OLD"]
    assert _state(book, "OLD") == (HealthState.OK, [])


def test_terminal_state_frame_has_the_metric_values(book: HealthBook, batch: Batch) -> None:
    """terminal_state_frame gives terminal_id and the numeric state, sorted by terminal."""
    book.observe(batch(_traffic("B", 0, 5, "technical") + _traffic("A", 0, 1)), now=at(60))
    book.apply_status([_status("C", "network", "offline", at(1))])
    book.evaluate(at(60))
    assert book.terminal_state_frame().rows() == [("A", 0), ("B", 2), ("C", 4)]


def test_invalid_rules_are_refused(tmp_path: Path) -> None:
    """An unknown outcome class, a window the windows section lacks or an unknown key is an error."""
    path = tmp_path / "health.yaml"
    for text, message in (("state:\n  failing:\n    classes: [oops]\n", "oops"),
                          ("state:\n  failing:\n    window: 15m\n", "15m"),
                          ("state:\n  flapping: 3\n", "flapping")):
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            HealthRules.load(path)


def test_evaluate_with_no_input_gives_an_empty_book(book: HealthBook) -> None:
    """Before any input the book is empty and every state counts zero."""
    book.evaluate(at(0) + timedelta(days=1))
    assert book.snapshot().height == 0
    assert set(book.states_count().values()) == {0}
