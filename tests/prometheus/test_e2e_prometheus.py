"""End to end: a real Prometheus scrapes the running monitor and the terminal alert fires.

The monitor (:class:`monitor.app.MonitorApp` on the session broker) is fed in real
time by the synthetic simulator, with one ATM answering ``91`` (issuer or switch
inoperative, technical class) to everything. Prometheus scrapes ``/metrics`` every
second and evaluates ``rules/prometheus/`` every second.

The production rules wait ``for: 2m`` (terminal failures) and longer; the test loads
a copy of both rule files generated from them at test time in which every ``for:``
is shortened to :data:`TEST_FOR` (see :func:`fast_copy`). Expressions, windows and
thresholds are the production ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from monitor.app import MonitorApp
from monitor.config import isolated_settings
from monitor.testing.broker import free_port
from simulators.faults import TerminalFault
from simulators.fleet import build_fleet, write_registry
from simulators.producer import produce
from simulators.sources.synthetic import synthetic_events
from tests.prometheus.conftest import PrometheusServer, StartPrometheus

RULES_DIR = Path(__file__).resolve().parents[2] / "rules" / "prometheus"
ALERT = "CardmonTerminalTechnicalFailures"
#: Replaces every alert's ``for:`` in the test copy of the rules.
TEST_FOR = "5s"
#: Seconds to wait for the alert to fire once traffic starts (usually ~10 s).
FIRE_TIMEOUT_S = 75.0


def fast_copy(source: Path, folder: Path, for_: str = TEST_FOR) -> Path:
    """Write ``source`` to ``folder`` with every alert's ``for:`` set to ``for_``.

    Args:
        source: a Prometheus rule file.
        folder: where the copy goes (same file name).
        for_: the Prometheus duration to use instead (``5s``).

    Returns:
        The path of the copy.
    """
    document = yaml.safe_load(source.read_text(encoding="utf-8"))
    for group in document["groups"]:
        for rule in group["rules"]:
            if "alert" in rule and "for" in rule:
                rule["for"] = for_
    copy = folder / source.name
    copy.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return copy


async def _api(http: httpx.AsyncClient, server: PrometheusServer, path: str, **params: str) -> Any:
    response = await http.get(f"{server.url}/api/v1/{path}", params=params, timeout=5)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


async def _alerts(http: httpx.AsyncClient, server: PrometheusServer, name: str) -> list[dict[str, Any]]:
    data = await _api(http, server, "alerts")
    return [alert for alert in data["alerts"] if alert["labels"]["alertname"] == name]


def test_fast_copy_only_shortens_for(tmp_path: Path) -> None:
    """The test copy of the rules differs from the production file only in the alerts' `for:`."""
    source = RULES_DIR / "cardmon.alerts.yml"
    original = yaml.safe_load(source.read_text(encoding="utf-8"))
    copy = yaml.safe_load(fast_copy(source, tmp_path).read_text(encoding="utf-8"))
    fors = [rule.get("for") for group in copy["groups"] for rule in group["rules"]]
    assert set(fors) <= {TEST_FOR, None} and TEST_FOR in fors
    for group in (original, copy):
        for rules in (g["rules"] for g in group["groups"]):
            for rule in rules:
                rule.pop("for", None)
    assert copy == original


@pytest.mark.integration
@pytest.mark.timeout(180)
async def test_failing_terminal_fires_the_technical_failure_alert(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, start_prometheus: StartPrometheus,
) -> None:
    """With one ATM answering 91 to everything, Prometheus fires the terminal alert for exactly that terminal ID, and the recording rules return its ratio."""
    fleet = build_fleet(terminals=20, customers=200, vips=0, seed=11)
    faulty = next(t.terminal_id for t in fleet.terminals if t.channel == "ATM")
    customers, managers = write_registry(fleet, tmp_path / "registry")
    metrics_port = free_port()
    settings = isolated_settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "topic": f"tx.{unique_name}",
               "dead_letter_topic": f"tx.{unique_name}.dlq", "group_id": f"prom-{unique_name}",
               "batch_timeout_ms": 100},
        registry={"customers_path": customers, "managers_path": managers},
        alerting={"store_path": tmp_path / "alerts.db", "sinks": ["jsonl"],
                  "jsonl_path": tmp_path / "alerts.jsonl"},
        metrics={"host": "127.0.0.1", "port": metrics_port},
        api={"enabled": False},  # not under test here; no fixed port (8465) to collide on
    )
    rules = [fast_copy(RULES_DIR / name, tmp_path) for name in ("cardmon.rules.yml", "cardmon.alerts.yml")]
    prometheus = start_prometheus([f"127.0.0.1:{metrics_port}"], rules)

    monitor = MonitorApp(settings, metrics_registry=CollectorRegistry())
    stop = asyncio.Event()
    monitor_task = asyncio.create_task(monitor.run(stop))
    # 60 events/s over 20 terminals (3/s each), paced in real time so rates are real.
    traffic = synthetic_events(fleet, rate=60.0, duration_s=FIRE_TIMEOUT_S + 30, vip_share=0.0,
                               faults=[TerminalFault(terminal_id=faulty, start_s=0.0, end_s=3600.0, response_code="91")])
    producer_task = asyncio.create_task(produce(
        traffic, bootstrap_servers=kafka_bootstrap, topic=settings.kafka.topic,
        speed=1.0, rebase_to_now=True,
    ))
    try:
        async with httpx.AsyncClient() as http:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + FIRE_TIMEOUT_S
            firing: list[dict[str, Any]] = []
            while not firing:
                assert not producer_task.done() or producer_task.exception() is None
                assert not monitor_task.done(), "the monitor stopped early"
                assert loop.time() < deadline, (
                    f"{ALERT} did not fire in {FIRE_TIMEOUT_S} s; alerts: "
                    f"{await _api(http, prometheus, 'alerts')}\nprometheus log:\n{prometheus.log()}"
                )
                await asyncio.sleep(1.0)
                firing = [a for a in await _alerts(http, prometheus, ALERT) if a["state"] == "firing"]

            # Exactly the faulty terminal, firing or pending: no healthy terminal alerts.
            alerts = await _alerts(http, prometheus, ALERT)
            assert {a["labels"]["terminal_id"] for a in alerts} == {faulty}
            (alert,) = firing
            assert alert["labels"]["severity"] == "critical"
            assert alert["annotations"]["summary"] == f"Terminal {faulty}: 100% technical failures"
            assert float(alert["value"]) == pytest.approx(1.0)

            ratio = await _api(http, prometheus, "query",
                               query="terminal:cardmon_terminal_technical_failures_per_transactions:ratio_rate5m")
            assert [(s["metric"]["terminal_id"], float(s["value"][1])) for s in ratio["result"]] == [
                (faulty, pytest.approx(1.0))]
            rates = await _api(http, prometheus, "query", query="channel:cardmon_transactions:rate5m")
            by_channel = {s["metric"]["channel"]: float(s["value"][1]) for s in rates["result"]}
            assert by_channel["ATM"] > 0 and by_channel["POS"] > 0
            # The fleet carries on: POS transactions are approved, not failing.
            approved = await _api(http, prometheus, "query", query=(
                'channel_outcome:cardmon_transactions_per_transactions:ratio_rate5m'
                '{channel="POS",outcome="approved"}'))
            assert float(approved["result"][0]["value"][1]) > 0.8
    finally:
        producer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer_task
        stop.set()
        await asyncio.wait_for(monitor_task, timeout=30)
