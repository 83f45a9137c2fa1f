"""Every PromQL target of every generated dashboard returns data from a real Prometheus.

A real Prometheus (Debian package ``prometheus``, started by the test on 127.0.0.1
with ``rules/prometheus/cardmon.rules.yml``, 1 s scrape and evaluation) scrapes a
running :class:`monitor.app.MonitorApp` on the session broker. The synthetic
simulator feeds it in real time with faults (one ATM answering ``91`` to
everything, a POS answering ``58``, a third of the traffic on VIP cards), a few
malformed messages go to the same topic (dead letters), and every relationship
manager's webhook is an aiohttp receiver on 127.0.0.1 answering ``503`` (delivery
retries and failures; the ``jsonl`` sink delivers, so ``sent`` exists too), and an
ATM's cassette reports low then empty on the device status topic. The escalation
policy steps in after 2 and 4 seconds, and a relationship-manager desk acknowledges
one notified alert a second and resolves one acknowledged alert a second through the
alert API, so the acknowledgement, escalation and time-to-acknowledge panels have
real data.

The test walks the committed JSON (``dashboards/json/*.json``), replaces Grafana's
``$__rate_interval``, ``$__interval`` and ``$__range`` with concrete durations and
each template variable with its "All" value, and evaluates each target with
``/api/v1/query`` until all of them return a non-empty result (and, for the panels
in :data:`MUST_BE_POSITIVE`, a value above zero: the faults must show).

Panels whose metric the monitor does not export yet are listed in
:data:`AWAITING_WIRING` with the metric they wait for: the test requires them to be
EMPTY, so it fails (naming them) as soon as the metric is wired and the entry must
be removed. Nothing is faked for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from dashboards.build import JSON_DIR
from monitor.app import MonitorApp
from monitor.config import isolated_settings
from monitor.testing.broker import free_port
from simulators.faults import TerminalFault
from simulators.fleet import build_fleet, write_registry
from simulators.producer import produce
from simulators.sources.synthetic import synthetic_events
from simulators.sources.terminal_status import CassetteDepletion, status_events
from tests.prometheus.conftest import PrometheusServer, StartPrometheus

RULES = Path(__file__).resolve().parents[2] / "rules" / "prometheus" / "cardmon.rules.yml"
POLICY = Path(__file__).resolve().parents[2] / "rules" / "alerting.yaml"
API_TOKEN = "dashboard-test-token"
#: Grafana macros → concrete values. 20 s holds ~20 samples at the 1 s scrape interval
#: (Grafana's own $__rate_interval is at least four scrape intervals).
MACROS = {"$__rate_interval": "20s", "$__interval": "5s", "$__range": "5m"}
#: Seconds to wait for every panel to have data once traffic starts (usually ~15 s).
DATA_TIMEOUT_S = 90.0

#: (dashboard uid, panel title) → the metric the panel waits for, when a panel is
#: added before the monitor exports its metric. The test requires these panels to
#: stay EMPTY, so it fails (naming them) as soon as the metric is wired and the
#: entry must be removed. Empty: every panel's metric is exported.
AWAITING_WIRING: dict[tuple[str, str], str] = {}
#: Panels that must show a value above zero, not just a series: the faults of the
#: test produce exactly these events, and a flat zero would hide a broken query.
MUST_BE_POSITIVE: frozenset[tuple[str, str]] = frozenset({
    ("cardmon-fleet-health", "Technical failure ratio, worst 10 terminals (5 min)"),
    ("cardmon-fleet-health", "Failure ratio by outcome class"),
    ("cardmon-fleet-health", "Worst terminals (1 h failure ratio)"),
    ("cardmon-fleet-health", "Terminals not ok"),
    ("cardmon-fleet-health", "Device components not ok"),
    ("cardmon-vip-experience", "VIP failures per second by tier"),
    ("cardmon-vip-experience", "Recovered vs abandoned in range by outcome class"),
    ("cardmon-vip-experience", "VIP failures by tier and outcome class"),
    ("cardmon-vip-experience", "Alerts sent in range"),
    ("cardmon-vip-experience", "Delivery retries and failures in range"),
    ("cardmon-vip-experience", "Alerts acknowledged in range"),
    ("cardmon-vip-experience", "Escalation steps in range"),
    ("cardmon-vip-experience", "Time to acknowledge p50 / p95 / p99"),
    ("cardmon-vip-experience", "Acknowledgements, escalations and resolutions per second"),
    ("cardmon-pipeline", "Dead letters per second by reason"),
    ("cardmon-pipeline", "Rejected messages in range by reason"),
    ("cardmon-pipeline", "Alert delivery failures by channel"),
    ("cardmon-pipeline", "Messages consumed per second"),
})


@dataclass(frozen=True, slots=True)
class Target:
    """One panel query of a generated dashboard, with Grafana's placeholders replaced."""

    dashboard: str  # dashboard uid
    panel: str  # panel title
    ref_id: str
    expr: str  # concrete PromQL

    @property
    def key(self) -> tuple[str, str]:
        return (self.dashboard, self.panel)


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace Grafana macros and ``$var`` / ``${var}`` template variables in ``expr``.

    Raises:
        AssertionError: a ``$`` placeholder is left over (unknown macro or variable).
    """
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    for name, value in variables.items():
        expr = re.sub(rf"\$\{{{name}\}}|\${name}\b", value, expr)
    assert "$" not in expr, f"unsubstituted placeholder in {expr!r}"
    return expr


def dashboard_targets(directory: Path = JSON_DIR) -> list[Target]:
    """Every target of every panel (rows included) of the committed dashboards."""
    targets = []
    for path in sorted(directory.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        # Each variable takes its "All" value, as a user who opens the dashboard sees it.
        variables = {v["name"]: v["allValue"] for v in document["templating"]["list"]}
        panels = list(document["panels"])
        for row in document["panels"]:
            panels.extend(row.get("panels", []))
        for panel in panels:
            for target in panel.get("targets", []):
                targets.append(Target(document["uid"], panel["title"], target["refId"],
                                      substitute(target["expr"], variables)))
    return targets


def test_targets_cover_every_panel_and_leave_no_placeholder() -> None:
    """The walk finds a target for every non-row panel of the three dashboards, all placeholders replaced."""
    targets = dashboard_targets()
    panels = set()
    for path in JSON_DIR.glob("*.json"):
        document = json.loads(path.read_text(encoding="utf-8"))
        panels |= {(document["uid"], p["title"]) for p in document["panels"] if p["type"] != "row"}
    assert {t.key for t in targets} == panels
    assert len(panels) >= 40
    assert set(AWAITING_WIRING) <= panels and MUST_BE_POSITIVE <= panels
    assert not MUST_BE_POSITIVE & set(AWAITING_WIRING)
    assert substitute('rate(x{channel=~"$channel"}[$__rate_interval]) ${tier}',
                      {"channel": ".*", "tier": "gold"}) == 'rate(x{channel=~".*"}[20s]) gold'


async def _query(http: httpx.AsyncClient, server: PrometheusServer, expr: str) -> list[Any]:
    response = await http.get(f"{server.url}/api/v1/query", params={"query": expr}, timeout=5)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


@pytest.fixture
async def failing_webhook() -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP receiver on 127.0.0.1 that answers 503 to every webhook POST; yields (base URL, paths hit)."""
    hits: list[str] = []

    async def refuse(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(status=503, text="maintenance")

    app = web.Application()
    app.router.add_post("/{manager_id}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}", hits
    finally:
        await runner.cleanup()


async def _send_malformed(bootstrap: str, topic: str, every_s: float = 3.0) -> None:
    """Every ``every_s`` seconds until cancelled, write three contract-breaking messages:
    not JSON, not an object, an object missing its fields."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        index = 0
        while True:
            for value in (b"{not json", b"[1, 2, 3]", b'{"event_id": "x"}'):
                await producer.send_and_wait(topic, value, key=f"BAD{index % 4}".encode())
            index += 1
            await asyncio.sleep(every_s)
    finally:
        await producer.stop()


async def _manager_desk(api_url: str, every_s: float = 1.0) -> None:
    """Until cancelled, every ``every_s`` seconds acknowledge the oldest notified alert (or, when
    none is, the oldest open one: the fleet's webhooks fail, and only a person's channel
    notifies) and resolve the oldest acknowledged one through the alert API, as a manager would."""
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=5) as http:
        while True:
            await asyncio.sleep(every_s)
            for states, action, body in ((("notified", "open"), "ack", {"by": "RM-desk"}),
                                         (("acknowledged",), "resolve",
                                          {"by": "RM-desk", "note": "called the client"})):
                try:
                    alerts = []
                    for state in states:
                        alerts = alerts or (await http.get("/alerts", params={"state": state})).json()["alerts"]
                    if alerts:
                        response = await http.post(f"/alerts/{alerts[-1]['alert_id']}/{action}",
                                                   json=body)
                        assert response.status_code == 200, response.text
                except httpx.TransportError:  # the API is not up yet
                    pass


def _positive(result: list[Any]) -> bool:
    """Whether any sample of an instant query result is above zero (NaN is not)."""
    return any(float(sample["value"][1]) > 0 for sample in result)


@pytest.mark.integration
@pytest.mark.timeout(240)
async def test_every_panel_query_returns_data(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, start_prometheus: StartPrometheus,
    failing_webhook: tuple[str, list[str]],
) -> None:
    """With faults, VIP traffic, malformed messages and a failing webhook, every dashboard query returns data from Prometheus, except the panels awaiting a metric, which return none."""
    webhook_url, webhook_hits = failing_webhook
    fleet = build_fleet(terminals=20, customers=200, vips=60, seed=5, webhook_base_url=webhook_url)
    atm, other_atm = [t.terminal_id for t in fleet.terminals if t.channel == "ATM"][:2]
    pos = next(t.terminal_id for t in fleet.terminals if t.channel == "POS")
    customers, managers = write_registry(fleet, tmp_path / "registry")
    metrics_port, api_port = free_port(), free_port()
    # The bank's policy, with the escalation steps seconds instead of minutes apart.
    policy = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
    policy["escalation"] = {"severities": ["high"], "steps": [
        {"after_seconds": 2, "to": "backup_manager"},
        {"after_seconds": 4, "to": "team_lead", "team_lead_id": fleet.managers[0].manager_id}]}
    policy_path = tmp_path / "alerting.yaml"
    policy_path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    settings = isolated_settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "topic": f"tx.{unique_name}",
               "dead_letter_topic": f"tx.{unique_name}.dlq", "group_id": f"dash-{unique_name}",
               "batch_timeout_ms": 100},
        registry={"customers_path": customers, "managers_path": managers},
        alerting={"store_path": tmp_path / "alerts.db", "sinks": ["jsonl"],
                  "jsonl_path": tmp_path / "alerts.jsonl", "retry_for_seconds": 0.5,
                  "backoff_initial_seconds": 0.2, "backoff_max_seconds": 0.5,
                  "policy_path": policy_path, "escalation_interval_seconds": 1.0},
        api={"host": "127.0.0.1", "port": api_port, "token": API_TOKEN},
        metrics={"host": "127.0.0.1", "port": metrics_port},
        health={"status_topic": f"st.{unique_name}",
                "status_dead_letter_topic": f"st.{unique_name}.dlq",
                "evaluate_interval_seconds": 1.0},
    )
    prometheus = start_prometheus([f"127.0.0.1:{metrics_port}"], [RULES])
    targets = dashboard_targets()

    monitor = MonitorApp(settings, metrics_registry=CollectorRegistry())
    stop = asyncio.Event()
    monitor_task = asyncio.create_task(monitor.run(stop))
    traffic = synthetic_events(
        fleet, rate=60.0, duration_s=DATA_TIMEOUT_S + 60, vip_share=0.3, seed=5,
        faults=[TerminalFault(terminal_id=atm, start_s=0.0, end_s=3600.0, response_code="91"),
                TerminalFault(terminal_id=pos, start_s=0.0, end_s=3600.0, response_code="58")],
    )
    producer_task = asyncio.create_task(produce(
        traffic, bootstrap_servers=kafka_bootstrap, topic=settings.kafka.topic,
        speed=1.0, rebase_to_now=True,
    ))
    malformed_task = asyncio.create_task(_send_malformed(kafka_bootstrap, settings.kafka.topic))
    desk_task = asyncio.create_task(_manager_desk(f"http://127.0.0.1:{api_port}"))
    await produce(status_events([CassetteDepletion(other_atm, 0.0, 2.0)]),
                  bootstrap_servers=kafka_bootstrap, topic=settings.health.status_topic)
    # Targets still to prove: no series yet, or no positive value yet where one is required.
    pending: set[Target] = set(targets)
    awaiting_with_data: set[Target] = set()
    try:
        async with httpx.AsyncClient() as http:
            loop = asyncio.get_running_loop()
            started = loop.time()
            while loop.time() < started + DATA_TIMEOUT_S:
                for task in (producer_task, malformed_task, desk_task):
                    assert not task.done() or task.exception() is None
                assert not monitor_task.done(), "the monitor stopped early"
                await asyncio.sleep(1.0)
                for target in list(pending):
                    result = await _query(http, prometheus, target.expr)
                    if not result:
                        continue
                    if target.key in AWAITING_WIRING:
                        awaiting_with_data.add(target)
                    if target.key not in MUST_BE_POSITIVE or _positive(result):
                        pending.discard(target)
                # Done once every wired panel is proven and the awaiting ones have had
                # half the time budget to show data (they must not).
                if all(t.key in AWAITING_WIRING for t in pending) and (
                        not AWAITING_WIRING or loop.time() > started + DATA_TIMEOUT_S / 2):
                    break
    finally:
        for task in (producer_task, malformed_task, desk_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        stop.set()
        await asyncio.wait_for(monitor_task, timeout=30)

    assert webhook_hits, "no webhook delivery was attempted: the failure panels prove nothing"
    assert not awaiting_with_data, (
        "these panels now have data; remove them from AWAITING_WIRING: "
        + "; ".join(f"{t.dashboard} / {t.panel}" for t in sorted(awaiting_with_data, key=str)))
    missing = {t for t in pending if t.key not in AWAITING_WIRING}
    assert not missing, "panels without data (or only zeros where the faults must show):\n" + (
        "\n".join(f"  {t.dashboard} / {t.panel} [{t.ref_id}]: {t.expr}"
                  for t in sorted(missing, key=str)))
    # Every awaiting panel was queried all along and stayed empty.
    assert {t.key for t in pending} == set(AWAITING_WIRING)
