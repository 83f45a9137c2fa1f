"""The `cardmon simulate` commands, run against the real broker."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import polars as pl
from typer.testing import CliRunner

from monitor.pipeline.decoder import decode_batch
from simulators.cli import app
from simulators.fleet import build_fleet
from simulators.sources.synthetic import default_faults, synthetic_events

runner = CliRunner()


def test_tabformer_command_sends_the_rows(kafka_bootstrap: str, unique_name: str,
                                          tabformer_csv: Path, topic_reader) -> None:
    """`tabformer PATH --limit 300` sends the first 300 rows, rebased to now, keyed by terminal."""
    topic = f"cli.tabformer.{unique_name}"
    before = datetime.now(UTC)
    result = runner.invoke(app, [
        "tabformer", str(tabformer_csv), "--bootstrap-servers", kafka_bootstrap,
        "--topic", topic, "--limit", "300", "--timezone", "America/Los_Angeles",
        "--rebase-to-now", "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    assert f"sent 300 event(s) to {topic}" in result.output
    records = asyncio.run(topic_reader(kafka_bootstrap, topic, 300))
    assert len(records) == 300
    batch = decode_batch([r.value for r in records])
    assert batch.rejections == []
    assert all(r.key == e.terminal_id.encode() for r, e in zip(records, batch.events))
    first = min(e.occurred_at for e in batch.events)
    assert abs((first - before).total_seconds()) < 60


def test_synthetic_command_sends_traffic_and_writes_registry(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, topic_reader,
) -> None:
    """`synthetic` sends the seeded traffic with its faults and writes the VIP registry CSVs."""
    topic = f"cli.synthetic.{unique_name}"
    result = runner.invoke(app, [
        "synthetic", "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
        "--duration", "5", "--rate", "100", "--speed", "0", "--seed", "3",
        "--registry-dir", str(tmp_path), "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    fleet = build_fleet(seed=3)
    # Arrival offsets do not depend on the start time, so the count is known in advance.
    expected = list(synthetic_events(fleet, start=datetime.now(UTC), rate=100,
                                     duration_s=5, faults=default_faults(fleet, 5), seed=3))
    records = asyncio.run(topic_reader(kafka_bootstrap, topic, len(expected)))
    assert len(records) == len(expected)
    values = [msgspec.json.decode(r.value) for r in records]
    assert sorted(v["card_ref"] for v in values) == sorted(e["card_ref"] for e in expected)
    codes = Counter(v.get("response_code", "timeout") for v in values)
    assert codes["91"] > 0 and codes["58"] + codes["timeout"] > 0
    customers = pl.read_csv(tmp_path / "customers.csv", infer_schema=False)
    assert set(customers["customer_id"]) == {c.customer_id for c in fleet.vips}
    assert (tmp_path / "managers.csv").is_file()


def test_unknown_time_zone_is_refused(tabformer_csv: Path) -> None:
    """A time zone that is not an IANA name is a usage error, before any connection."""
    result = runner.invoke(app, ["tabformer", str(tabformer_csv), "--timezone", "Mars/Olympus"])
    assert result.exit_code == 2
    assert "Mars/Olympus" in result.output


def test_unreachable_broker_is_reported(tabformer_csv: Path) -> None:
    """A broker that cannot be reached for --retry-seconds ends the command with exit code 1 and a message."""
    result = runner.invoke(app, [
        "tabformer", str(tabformer_csv), "--bootstrap-servers", "127.0.0.1:1",
        "--limit", "1", "--no-progress", "--retry-seconds", "1",
    ])
    assert result.exit_code == 1
    assert "127.0.0.1:1" in result.output
