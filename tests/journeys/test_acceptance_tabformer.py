"""Acceptance: the real TabFormer sample replayed through Kafka and the whole monitor.

U0 is a top-tier VIP. Every one of the file's 574 failed rows must be in exactly
one alert, no approved row in any alert, the outcome counts must match the file,
and ``cardmon_transactions_total`` must sum to 19,963.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
from collections import Counter
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from monitor.alerts.export import export_jsonl
from monitor.alerts.store import AlertStore
from monitor.app import MonitorApp
from monitor.testing.broker import free_port
from monitor.testing.fixtures import monitor_settings, wait_until
from simulators.producer import produce
from simulators.sources.tabformer import tabformer_events
from tests.helpers import write_registry

ROWS = 19_963
# From the file itself (SOURCES.md): outcome class of each Errors? value under the
# fixed mapping (51/55 customer, 14/54/N7 card, 96 technical; two reasons → the more severe).
EXPECTED_OUTCOMES = {"approved": 19_389, "customer": 469 + 42 + 1, "technical": 46 + 1, "card": 9 + 4 + 2}


def _file_failures(path: Path) -> set[str]:
    """Event IDs of the failed rows, computed from the CSV with the csv module."""
    failed = set()
    with path.open(newline="", encoding="utf-8") as handle:
        for row_number, row in enumerate(csv.DictReader(handle), start=1):
            if row["Errors?"].strip():
                failed.add(f"tf-U{row['User']}-C{row['Card']}-{row_number:06d}")
    return failed


async def test_tabformer_replay_alerts_every_failure_exactly_once(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path, tabformer_csv: Path,
        promtool: str) -> None:
    """Each of the 574 failed rows of U0 is in exactly one alert and the counts match the file."""
    customers, managers = write_registry(
        tmp_path / "registry",
        "customer_id,name,tier,manager_id,card_refs\nU0,User Zero,private,M-01,",
        "manager_id,name,email,phone,webhook_url,backup_manager_id,timezone\n"
        "M-01,Dana Scully,,+1-202-555-0100,,,America/Los_Angeles",
    )
    port = free_port()
    settings = monitor_settings(
        tmp_path, kafka_bootstrap, unique_name, vip_registry=(customers, managers),
        kafka={"batch_timeout_ms": 100},
        alerting={"sinks": ["jsonl"], "jsonl_path": tmp_path / "alerts.jsonl"},
        metrics={"port": port},
        api={"enabled": False},  # not under test here
    )
    monitor = MonitorApp(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        sent = await produce(tabformer_events(tabformer_csv), bootstrap_servers=kafka_bootstrap,
                             topic=settings.kafka.topic)
        assert sent == ROWS
        await wait_until(lambda: monitor.consumer.events >= ROWS, timeout=120, what="all rows consumed")
        scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        store = monitor.store
        # The 2002-era rows are late (stale events): nobody is paged, the jsonl sink records them.
        await wait_until(lambda: store.pending_count() == 0, timeout=60, what="every alert delivered")
    finally:
        stop.set()
        await task

    # The live scrape passes Prometheus's own linter without a single remark.
    lint = subprocess.run([promtool, "check", "metrics"], input=scrape.encode(),
                          capture_output=True, timeout=60)
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, b"")
    assert "U0" not in scrape, "a customer or card identifier reached a metric label"

    families = {f.name: f for f in text_string_to_metric_families(scrape)}
    by_outcome: Counter[str] = Counter()
    for sample in families["cardmon_transactions"].samples:
        if sample.name == "cardmon_transactions_total":
            by_outcome[sample.labels["outcome"]] += int(sample.value)
    assert sum(by_outcome.values()) == ROWS
    assert {k: v for k, v in by_outcome.items() if v} == EXPECTED_OUTCOMES
    vip = {s.labels["outcome"]: s.value for s in families["cardmon_vip_failures"].samples
           if s.name == "cardmon_vip_failures_total"}
    assert vip == {"customer": 512, "technical": 47, "card": 15}

    failed = _file_failures(tabformer_csv)
    assert len(failed) == 574
    with AlertStore(tmp_path / "alerts.db") as store:
        out = io.StringIO()
        exported = export_jsonl(store, out)
    alerts = [json.loads(line) for line in out.getvalue().splitlines()]
    assert exported == len(alerts) > 0
    in_alerts = Counter(event["event_id"] for alert in alerts for event in alert["events"])
    assert set(in_alerts) == failed, "an approved row is in an alert, or a failed row is missing"
    assert max(in_alerts.values()) == 1, "a failed row is in more than one alert"
    for alert in alerts:
        assert alert["customer_id"] == "U0" and alert["tier"] == "private"
        for event in alert["events"]:
            assert event["outcome"] != "approved"
            assert set(event) >= {"event_id", "occurred_at", "channel", "terminal_id", "merchant_id",
                                  "txn_type", "amount_minor", "currency", "response_code", "outcome"}

    # Every alert reached the jsonl sink exactly once.
    delivered = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    delivered_ids = Counter(d.get("alert_id") for d in delivered)
    assert set(delivered_ids) == {a["alert_id"] for a in alerts}
    assert max(delivered_ids.values()) == 1
