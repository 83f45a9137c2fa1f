"""Fleet aggregation by region, branch, merchant and model; the worst terminals."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from monitor.health.aggregate import AggregateRules, group_stats, worst_terminals
from monitor.health.state import HealthBook, HealthRules
from monitor.health.terminals import TerminalRegistryLoader
from monitor.health.windows import WindowRules
from tests.health.conftest import Batch, at


def _rows(terminal_id: str, ok: int, failed: int, outcome: str = "technical", start: float = 0,
          **fields: object) -> list[dict[str, object]]:
    return ([{"terminal_id": terminal_id, "at": start + i, **fields} for i in range(ok)]
            + [{"terminal_id": terminal_id, "at": start + i, "outcome": outcome, **fields} for i in range(failed)])


def _groups(book: HealthBook, dimension: str, window: str = "1h") -> dict[str, tuple[int, float | None]]:
    frame = book.groups().filter((pl.col("dimension") == dimension) & (pl.col("window") == window))
    return {g: (t, r) for g, t, r in frame.select("group", "transactions", "failure_ratio").iter_rows()}


def test_groups_take_event_attributes_and_fill_from_the_registry(tmp_path: Path, batch: Batch) -> None:
    """Events give region and branch; the registry fills what they lack and gives the model."""
    registry_file = tmp_path / "terminals.csv"
    registry_file.write_text("terminal_id,model,region,branch_id\nA1,NCR SelfServ 84,west,B9\nA2,Hyosung 2700,west,B9\n")
    loader = TerminalRegistryLoader(registry_file)
    loader.load()
    book = HealthBook(registry=loader)
    book.observe(batch(_rows("A1", 8, 2, region="north", branch_id="B1") + _rows("A2", 5, 5, "card")
                       + _rows("P1", 10, 0, merchant_id="M7") + _rows("P2", 9, 1, "customer", merchant_id="M7")),
                 now=at(600))
    book.evaluate(at(600))
    assert _groups(book, "region") == {"north": (10, 0.2), "west": (10, 0.5), "unknown": (20, 0.0)}
    assert _groups(book, "branch") == {"B1": (10, 0.2), "B9": (10, 0.5), "unknown": (20, 0.0)}
    assert _groups(book, "model") == {"unknown": (20, 0.0), "Hyosung 2700": (10, 0.5), "NCR SelfServ 84": (10, 0.2)}
    assert _groups(book, "merchant") == {"M7": (20, 0.0), "unknown": (20, pytest.approx(0.35))}
    assert _groups(book, "region", "5m")["west"] == (10, 0.5)


def test_groups_beyond_max_groups_are_summed_into_other(batch: Batch) -> None:
    """Only the max_groups largest groups keep their name; the rest add up in 'other'."""
    rules = HealthRules(aggregate=AggregateRules(max_groups={"merchant": 2}))
    book = HealthBook(rules)
    rows = _rows("T1", 30, 0, merchant_id="BIG") + _rows("T2", 20, 0, merchant_id="MID")
    rows += _rows("T3", 5, 5, merchant_id="S1") + _rows("T4", 3, 1, "terminal", merchant_id="S2")
    book.observe(batch(rows), now=at(60))
    book.evaluate(at(60))
    assert _groups(book, "merchant") == {"BIG": (30, 0.0), "MID": (20, 0.0), "other": (14, pytest.approx(6 / 14))}
    other = book.groups().filter((pl.col("group") == "other") & (pl.col("window") == "1h"))
    assert other.get_column("terminals").to_list() == [2]


def test_worst_terminals_need_the_minimum_volume(batch: Batch) -> None:
    """Top-N ranks by 1 h failure ratio among terminals with enough volume; ties go to the busier terminal."""
    rows = _rows("TINY", 0, 3) + _rows("HALF", 10, 10) + _rows("HALF2", 15, 15) + _rows("FIFTH", 16, 4, "card")
    rows += _rows("CLEAN", 40, 0) + _rows("CUST", 10, 20, "customer")
    book = HealthBook()
    book.observe(batch(rows), now=at(60))
    book.evaluate(at(60))
    assert book.worst().rows() == [(1, "HALF2", 0.5, 30), (2, "HALF", 0.5, 20), (3, "FIFTH", 0.2, 20)]
    top1 = worst_terminals(book.snapshot(), AggregateRules(worst_n=1, worst_min_volume=1))
    assert top1.rows() == [(1, "TINY", 1.0, 3)]


def test_group_stats_of_an_empty_fleet_is_empty() -> None:
    """No terminals, no groups (and no error)."""
    frame = HealthBook().snapshot()
    assert group_stats(frame, AggregateRules(), WindowRules()).height == 0


def test_aggregate_rules_are_checked() -> None:
    """An unknown dimension or outcome class in the aggregate rules is an error."""
    with pytest.raises(ValueError, match="dimension"):
        AggregateRules.from_mapping({"max_groups": {"city": 3}})
    with pytest.raises(ValueError, match="class"):
        AggregateRules.from_mapping({"classes": ["late"]})
