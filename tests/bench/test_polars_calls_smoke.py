"""Smoke test of the polars-calls benchmark: it counts per stage and leaves polars as it found it."""

from __future__ import annotations

import polars as pl
import pytest
from polars.lazyframe import engine_config

from bench.polars_calls import main
from monitor.pipeline.processor import STAGES


def test_polars_calls_counts_each_stage_and_restores_polars(capsys: pytest.CaptureFixture[str]) -> None:
    """A small run prints every stage's calls per batch and a total, then polars' own functions are back."""
    engine = type(engine_config._eager_engine())
    before = (engine.collect, pl.LazyFrame.collect, pl.collect_all)
    assert main(["--events", "2000", "--batch", "500", "--sites"]) == 0
    out = capsys.readouterr().out
    assert "polars calls per batch (4 batches)" in out
    for stage in STAGES:
        assert f"  {stage} " in out
    total = next(line for line in out.splitlines() if line.strip().startswith("total"))
    assert float(total.split("(all: ")[1].rstrip(")")) > 0
    assert (engine.collect, pl.LazyFrame.collect, pl.collect_all) == before
