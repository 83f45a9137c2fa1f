"""Scale-out end to end: one instance and three in one consumer group give the same incidents, notices, alerts and health.

The real embedded broker, a real PostgreSQL store per run, a real HTTP receiver for
the managers' webhooks; the three instances are separate MonitorApps (own consumer,
own store connection, own detector) in one process, one consumer group.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from monitor.alerts.store import AlertStore
from monitor.app import MonitorApp
from monitor.config import Settings
from monitor.kafka.clients import ensure_topics
from monitor.testing.fixtures import monitor_settings, wait_until
from tests.helpers import encode, event, write_registry
from tests.journeys.test_storm import policy_file
from tests.postgres import PostgresServer

pytestmark = pytest.mark.usefixtures("clean_environment")

# An hour ago: terminal health keeps terminals seen within its retention (7 days) of the wall clock.
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
PARTITIONS = 6
TERMINALS = [f"ATM-{i:02d}" for i in range(24)]  # 4 per partition
OUTAGE_IIN = "412345"
MANAGERS = [f"M{m}" for m in range(1, 5)]
VIPS = [(f"V{m}{c}", f"M{m}", f"tok-vip-{m}{c}") for m in range(1, 5) for c in range(1, 4)]  # 12 clients


@dataclass
class Hooks:
    """A real HTTP receiver: (run, manager ID, idempotency key, JSON body) of every POST."""

    url: str = ""
    posts: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    """An aiohttp webhook receiver answering 200 to every POST on /{run}/{manager}."""
    received = Hooks()

    async def hook(request: web.Request) -> web.Response:
        received.posts.append((request.match_info["run"], request.match_info["manager"],
                               request.headers.get("Idempotency-Key", ""), await request.json()))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/{run}/{manager}", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    received.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield received
    await runner.cleanup()


def _at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def scenario() -> list[tuple[int, dict[str, Any]]]:
    """(partition, event) in event-time order: an issuer outage spread over every terminal and partition.

    400 s of traffic on 24 terminals (two approvals per terminal per 10-s bucket, other
    issuers' cards); from 60 s to 120 s every card of IIN 412345 fails (response code
    91, "technical"): one failure on twelve terminals per bucket, a third of the
    terminal's traffic, so no terminal, merchant, region or the network fails at the
    ratio, only the issuer. Twelve VIP clients of four managers fail among them.
    """
    timed: list[tuple[float, int, dict[str, Any]]] = []
    for b in range(40):
        for i, terminal in enumerate(TERMINALS):
            place = {"terminal_id": terminal, "merchant_id": f"MER-{i:02d}", "region": f"R{i % 3}"}
            for n in range(2):
                at = b * 10 + (i * 0.37 + n * 5) % 10
                timed.append((at, i % PARTITIONS, event(
                    f"ok-{b}-{i}-{n}", occurred_at=_at(at), card_ref=f"tok-ok-{b}-{i}-{n}",
                    pan_masked=f"49999{n}******{i:04d}", response_code="00", **place)))
    vip = 0
    for b in range(6, 12):  # the outage: 60 s to 120 s
        for k in range(12):
            i = (b * 5 + k * 2) % 24
            at = b * 10 + (k * 0.7 + 0.3) % 10
            place = {"terminal_id": TERMINALS[i], "merchant_id": f"MER-{i:02d}", "region": f"R{i % 3}"}
            if k % 6 == 0 and vip < len(VIPS):  # two VIP failures per bucket
                customer, _, card = VIPS[vip]
                vip += 1
                event_id, card_ref = f"vip-{customer}", card
            else:
                event_id, card_ref = f"out-{b}-{k}", f"tok-out-{b}-{k}"
            timed.append((at, i % PARTITIONS, event(
                event_id, occurred_at=_at(at), card_ref=card_ref, pan_masked=f"{OUTAGE_IIN}******{k:04d}",
                response_code="91", **place)))
    timed.sort(key=lambda t: (t[0], t[2]["event_id"]))
    return [(partition, value) for _, partition, value in timed]


def _settings(tmp_path: Path, bootstrap: str, name: str, registry: tuple[Path, Path], policy: Path,
              store_url: str, instance: int, *, scale_out: bool) -> Settings:
    return monitor_settings(
        tmp_path, bootstrap, name, vip_registry=registry,
        kafka={"batch_max_records": 100, "client_id": f"cardmon-{instance}"},
        # Events are produced while the instances read: an event may reach one partition a
        # moment after another partition's later ones. A lateness above that spread keeps
        # every event on time in both runs.
        event_time={"allowed_lateness_seconds": 60},
        health={"consume_status": False},
        alerting={"policy_path": policy, "stale_after_seconds": None, "store_url": store_url,
                  "scale_out": {"enabled": scale_out, "interval_seconds": 0.1}},
    )


async def _run(count: int, *, tmp_path: Path, bootstrap: str, name: str, store_url: str,
               hooks: Hooks) -> tuple[list[MonitorApp], list[tuple[str, str, dict[str, Any]]]]:
    """Run ``count`` instances in one group over the scenario; the apps and their webhook posts."""
    managers = ["manager_id,name,email,webhook_url,timezone"] + [
        f"{m},Manager {m},,{hooks.url}/{name}/{m},Europe/Paris" for m in MANAGERS]
    customers = ["customer_id,name,tier,manager_id,card_refs"] + [
        f"{c},Client {c},private,{m},{card}" for c, m, card in VIPS]
    registry = write_registry(tmp_path / name / "registry", "\n".join(customers), "\n".join(managers))
    policy = policy_file(tmp_path / name, group_wait_seconds=20, group_interval_seconds=300)
    # One instance: today's detector (scale-out off); three: the shared counts and one judge.
    apps = [MonitorApp(_settings(tmp_path / name, bootstrap, name, registry, policy, store_url, n,
                                 scale_out=count > 1),
                       metrics_registry=CollectorRegistry()) for n in range(count)]
    kafka = apps[0].settings.kafka
    await ensure_topics(kafka, partitions=PARTITIONS)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(app.run(stop, create_topics=False)) for app in apps]
    try:
        def assigned() -> bool:  # the group has settled: every instance reads its share
            owned = [app.consumer._consumer.assignment() if app.consumer._consumer is not None else set()
                     for app in apps]
            return all(owned) and sum(len(o) for o in owned) == PARTITIONS
        await wait_until(assigned, timeout=60, what=f"{count} instance(s) to share {PARTITIONS} partitions")
        events = scenario()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
        await producer.start()
        try:
            for start in range(0, len(events), 120):  # ~20 s of event time a chunk, under the lateness
                for partition, value in events[start:start + 120]:
                    await producer.send(kafka.topic, encode(value), key=value["terminal_id"].encode(),
                                        partition=partition)
                await producer.flush()
        finally:
            await producer.stop()
        total = len(events)

        def read() -> bool:
            return sum(app.consumer.events for app in apps) >= total
        await wait_until(read, timeout=60, what="every event read")

        def noticed() -> bool:  # every manager's notice went out
            return len({p[1] for p in hooks.posts if p[0] == name}) == len(MANAGERS)
        await wait_until(noticed, timeout=60, what="a notice to each manager")
        await asyncio.sleep(2)  # anything sent twice, or late, would arrive now
        for app in apps:  # terminal health at one moment, for both runs
            app.health.book.evaluate(T0 + timedelta(seconds=400))
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    return apps, [(m, key, body) for run, m, key, body in hooks.posts if run == name]


def _summary(store_url: str, apps: list[MonitorApp], posts: list[tuple[str, str, dict[str, Any]]]
             ) -> dict[str, Any]:
    with AlertStore(store_url) as store:
        incidents = [(i.incident_id, i.scope, i.scope_key, i.started_at, i.last_failure_at, i.ended_at,
                      i.failures, i.cards, i.terminals, i.alert_count, i.manager_count)
                     for i in store.list_incidents()]
        alerts = sorted((a.alert_id, a.customer_id, a.manager.manager_id, a.severity, a.event_count,
                         a.status, tuple(sorted((d.channel, d.status) for d in a.deliveries)))
                        for a in store.list_alerts())
    notices = sorted(
        (manager, key, body["kind"], body["incident"]["incident_id"], body["incident"]["scope_key"],
         body["incident"]["started_at"],
         tuple(sorted((c["customer_id"], c["alert_id"], c["failures"]) for c in body["clients"])))
        for manager, key, body in posts)
    health = sorted(row for app in apps for row in app.health.book.terminal_state_frame().iter_rows())
    return {"incidents": incidents, "alerts": alerts, "notices": notices, "health": health}


@pytest.mark.integration
@pytest.mark.timeout(300)
async def test_three_instances_in_one_group_find_the_same_issuer_outage_as_one(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path, postgres: PostgresServer,
        hooks: Hooks) -> None:
    """An issuer outage over six partitions gives one and three instances the same incident, notices, alerts and terminal health states."""
    results = {}
    for count in (1, 3):
        name, url = f"{unique_name}-{count}", postgres.new_store_url()
        apps, posts = await _run(count, tmp_path=tmp_path, bootstrap=kafka_bootstrap, name=name,
                                 store_url=url, hooks=hooks)
        results[count] = _summary(url, apps, posts)
        if count == 3:  # every instance read a share: the outage was split between them
            assert all(app.consumer.events > 0 for app in apps)
    one, three = results[1], results[3]
    assert [(i[1], i[2]) for i in one["incidents"]] == [("issuer", OUTAGE_IIN)]
    incident = one["incidents"][0]
    assert incident[3] == T0 + timedelta(seconds=60.3) and incident[6] == 72  # start, failures
    assert incident[9:] == (12, 4)  # twelve VIP alerts of four managers
    assert three["incidents"] == one["incidents"]
    assert len(one["notices"]) == len(MANAGERS) and three["notices"] == one["notices"]
    assert all(len(n[6]) == 3 for n in one["notices"])  # each manager's three clients, in one notice
    assert three["alerts"] == one["alerts"] and len(one["alerts"]) == len(VIPS)
    assert three["health"] == one["health"] and len(one["health"]) == len(TERMINALS)
