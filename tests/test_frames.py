"""The batch path's polars plans: collected by the in-memory engine, with the default engine's results."""

from __future__ import annotations

import polars as pl
import pytest

from monitor import frames


def test_collect_and_collect_all_give_the_default_engines_results() -> None:
    """A plan collected alone or with others gives what polars' own collect gives, in the plans' order."""
    lazy = pl.DataFrame({"key": ["b", "a", "b", None], "n": [1, 2, 3, 4]}).lazy()
    plans = [lazy.filter(pl.col("n") > 1), lazy.group_by("key").agg(pl.col("n").sum()).sort("key")]
    assert frames.collect(plans[0]).equals(plans[0].collect())
    assert [f.rows() for f in frames.collect_all(plans)] == [p.collect().rows() for p in plans]


def test_plans_are_collected_by_the_in_memory_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both helpers name the in-memory engine (polars' automatic choice costs more per call on a micro-batch)."""
    engines: list[object] = []
    collect, collect_all = pl.LazyFrame.collect, pl.collect_all
    monkeypatch.setattr(pl.LazyFrame, "collect",
                        lambda self, *a, **k: engines.append(k.get("engine")) or collect(self, *a, **k))
    monkeypatch.setattr(pl, "collect_all",
                        lambda *a, **k: engines.append(k.get("engine")) or collect_all(*a, **k))
    lazy = pl.DataFrame({"n": [1]}).lazy()
    frames.collect(lazy)
    frames.collect_all([lazy])
    assert engines == ["in-memory", "in-memory"] == [frames.BATCH_ENGINE] * 2
