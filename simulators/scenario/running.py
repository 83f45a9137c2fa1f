"""Running a scenario: through Kafka and a real monitor, then checked against its ``expect``.

Event time is compressed: all events are produced as fast as possible with their
synthetic ``occurred_at`` (from the scenario's ``start``), and the monitor groups in
event time, so thirty minutes of traffic run in seconds.

:func:`run_scenario` starts the embedded broker unless one is given, writes the VIP
and terminal registries to a temporary folder (:mod:`simulators.scenario.generation`),
runs a :class:`monitor.app.MonitorApp` on isolated settings (``jsonl`` sink, its own
topic and group), produces the events (:func:`simulators.producer.produce`), waits
until every event is consumed and every delivery has left the outbox, then
:func:`simulators.scenario.checking.check` compares what happened with ``expect`` and
the run returns a :class:`~simulators.scenario.checking.ScenarioReport`.

In a scenario whose ``expect`` has ``follow_ups``, every manager has a real channel:
their webhook is a real HTTP receiver the runner starts on 127.0.0.1
(:mod:`simulators.scenario.receiver`), which keeps what each manager received (alerts,
incident notices, recovery follow-ups). Other scenarios leave the managers without a
channel, as their files say: their alerts are stored unnotified, and the run does not
wait the storm control's wall-clock ``group_wait_seconds`` (15 s) that a manager's
outage-class alert is held for before it is sent. Once every event is consumed, the runner lets the recovery watch decide and queues
the follow-ups of the decided watches (what the ``recovery`` and
``recovery-follow-ups`` jobs do, without waiting for their next run), then waits
until the outbox is empty again, so ``expect.follow_ups`` sees every follow-up sent.

Terminal health is evaluated once, in **event time**, after every event is consumed:
at the last event's ``occurred_at`` (or ``expect.health_at_offset_s``) the runner
runs the silent detector, marks its result in the health book and evaluates the
book, as the monitor's scheduled jobs would at that instant. (The monitor's own
wall-clock evaluation job is pushed out of the run: scenario events lie in the past,
and a wall-clock evaluation would drop every terminal as stale.) The silent
detector's baseline is the generator's own
(:func:`simulators.scenario.generation.write_baseline`; it only applies while the
terminal is open), and it starts watching at the scenario's ``start``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from monitor.alerts.messages.recovery import PAYLOAD_SCHEMA as RECOVERY_SCHEMA
from monitor.alerts.routing import MANAGER_CHANNEL_KINDS
from monitor.app import MonitorApp
from monitor.config import isolated_settings
from monitor.health.service import TerminalHealthService
from monitor.health.state_rules import HealthState
from monitor.kafka.clients import ensure_topics
from monitor.testing.broker import EmbeddedBroker, free_port
from simulators.fleet import write_registry
from simulators.producer import produce
from simulators.scenario.checking import Observed, ScenarioReport, check
from simulators.scenario.generation import (
    scenario_events,
    scenario_fleet,
    write_baseline,
    write_terminals,
)
from simulators.scenario.receiver import ManagerInbox, serve_manager_inbox
from simulators.scenario.schema import Scenario, ScenarioError

__all__ = ["run_scenario"]


def _evaluate_health(health: TerminalHealthService, at: datetime,
                     terminal_ids: list[str]) -> dict[str, tuple[HealthState, list[str]] | None]:
    """Silent detection, then the health book, at event time ``at``: what the scheduled jobs do.

    Run it on the health thread (``health.worker.call``), as the jobs do: it then runs
    after every batch already handed to that thread, so no consumed event is missed.
    """
    silent = health.detector.evaluate(at)
    health.book.mark_silent(silent, at)
    health.book.evaluate(at)
    return {tid: health.book.state_of(tid) for tid in terminal_ids}


async def _wait(condition: Any, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"scenario run: timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)


async def _follow_up(monitor: MonitorApp) -> int:
    """The recovery watch's final decision, then its follow-ups queued, as the scheduled jobs would.

    After the last event: the watch decides (``abandoned`` once the watermark passed a
    deadline) and the follow-ups of every decided watch are queued to the managers who
    opted in, as the ``recovery`` and ``recovery-follow-ups`` jobs do, without waiting
    for their next run. Queuing is once only in the store: the job running meanwhile
    queues nothing twice.

    Returns:
        How many follow-ups this call queued (0 with the watch off).
    """
    if monitor.recovery is None:
        return 0
    await asyncio.to_thread(monitor.recovery.decide)
    alerting = monitor.settings.alerting
    queued = await asyncio.to_thread(
        monitor.store.queue_recovery_follow_ups, datetime.now(UTC),
        managers=monitor.vip_registry.current.managers,
        channels=tuple(kind for kind in MANAGER_CHANNEL_KINDS if kind in monitor.channels),
        sinks=tuple(name for name in alerting.sinks if name in monitor.channels))
    if queued:
        monitor.worker.wake()
    return queued


async def run_scenario(scenario: Scenario, *, bootstrap_servers: str | None = None,
                       workdir: Path | None = None, timeout: float = 60.0) -> ScenarioReport:
    """Run ``scenario`` through Kafka and a monitor, then check its expectations.

    Args:
        scenario: from :func:`load_scenario` / :func:`resolve_scenario`.
        bootstrap_servers: an existing Kafka; ``None`` starts the embedded broker.
        workdir: folder for the registries, alert store and ``alerts.jsonl`` (a temp dir if None).
        timeout: seconds to wait for consumption and delivery before giving up.

    Returns:
        The :class:`ScenarioReport` (``passed`` tells the verdict).

    Raises:
        TimeoutError: the monitor did not consume every event, or deliver every alert, in time.
        monitor.testing.broker.BrokerError: the embedded broker could not start.
        aiokafka.errors.KafkaError: the broker could not be reached.
    """
    started = time.monotonic()
    broker = EmbeddedBroker().start() if bootstrap_servers is None else None
    bootstrap = broker.bootstrap_servers if broker is not None else str(bootstrap_servers)
    work = workdir or Path(tempfile.mkdtemp(prefix=f"cardmon-scenario-{scenario.name}-"))
    work.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    try:
        async with serve_manager_inbox() as inbox:
            return await _run(scenario, bootstrap, work, run_id, inbox, started=started,
                              timeout=timeout)
    finally:
        if broker is not None:
            broker.stop()


async def _run(scenario: Scenario, bootstrap: str, work: Path, run_id: str, inbox: ManagerInbox,
               *, started: float, timeout: float) -> ScenarioReport:
    """The run itself; with ``expect.follow_ups`` the managers' webhooks are ``inbox``'s."""
    webhooks = inbox.base if scenario.expect.follow_ups else None
    customers, managers = write_registry(scenario_fleet(scenario, webhook_base_url=webhooks),
                                         work / "registry")
    terminals = write_terminals(scenario, work / "registry" / "terminals.csv")
    topic = f"scenario.{scenario.name}.{run_id}"
    settings = isolated_settings(
        kafka={"bootstrap_servers": bootstrap, "topic": topic, "dead_letter_topic": f"{topic}.dlq",
               "group_id": f"cardmon-scenario-{run_id}", "batch_timeout_ms": 50},
        registry={"customers_path": customers, "managers_path": managers},
        # A scenario replays its own timeline from a fixed start: its failures are
        # never stale (alerting.stale_after_seconds is for a live monitor).
        alerting={"store_path": work / "alerts.db", "sinks": ["jsonl"],
                  "jsonl_path": work / "alerts.jsonl", "poll_interval_seconds": 0.05,
                  "stale_after_seconds": None},
        # The wall-clock evaluation job never runs during a scenario (see the module doc).
        health={"terminals_path": terminals, "consume_status": False,
                "baseline_path": write_baseline(scenario, work / "registry" / "baseline.parquet"),
                "evaluate_interval_seconds": 86_400},
        metrics={"host": "127.0.0.1", "port": free_port()},
        api={"enabled": False},  # nobody acknowledges in a scenario; never hold a fixed port
    )
    await ensure_topics(settings.kafka, partitions=1)
    monitor = MonitorApp(settings, metrics_registry=CollectorRegistry())
    monitor.health.detector.started_at = scenario.start  # watching since the scenario's start
    last_event: list[datetime] = [scenario.start]

    def tracked() -> Iterator[dict[str, Any]]:
        for event in scenario_events(scenario):
            last_event[0] = max(last_event[0], datetime.fromisoformat(event["occurred_at"]))
            yield event

    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop, create_topics=False))
    try:
        produced = await produce(tracked(), bootstrap_servers=bootstrap, topic=topic)
        await _wait(lambda: monitor.consumer.events >= produced or task.done(),
                    timeout=timeout, what=f"{produced} events to be consumed")
        await _wait(lambda: task.done() or monitor.store.pending_count() == 0,
                    timeout=timeout, what="every alert to be delivered")
        if task.done():  # the monitor died: surface its error
            await task
        # Queued by this call or by the job just before it: wait for the outbox either way.
        await _follow_up(monitor)
        await _wait(lambda: task.done() or monitor.store.pending_count() == 0,
                    timeout=timeout, what="every recovery follow-up to be delivered")
        if task.done():
            await task
        alerts = tuple(monitor.store.list_alerts())
        events = {a.alert_id: tuple(monitor.store.alert_events(a.alert_id)) for a in alerts}
        health_at = last_event[0]
        if scenario.expect.health_at_offset_s is not None:
            health_at = scenario.start + timedelta(seconds=scenario.expect.health_at_offset_s)
            if health_at < last_event[0]:
                raise ScenarioError(
                    f"expect.health_at_offset_s {scenario.expect.health_at_offset_s:g} is before "
                    f"the last event ({(last_event[0] - scenario.start).total_seconds():g} s)")
        health = await monitor.health.worker.call(
            _evaluate_health, monitor.health, health_at,
            [t.terminal_id for t in scenario.fleet.terminals])
        incidents = tuple(
            (incident, frozenset(a.manager.manager_id for a, _, _ in
                                 monitor.store.incident_alerts(incident.incident_id)))
            for incident in monitor.store.list_incidents(limit=500))
        recoveries = monitor.store.recoveries_of([a.alert_id for a in alerts])
        observed = Observed(alerts=alerts, events=events, registry=monitor.metrics_registry,
                            start=scenario.start, health=health, health_at=health_at,
                            incidents=incidents, recoveries=recoveries,
                            follow_ups={m: tuple(inbox.of_schema(m, RECOVERY_SCHEMA))
                                        for m in sorted(inbox.received)})
        checks = check(scenario.expect, observed)
        consumed = monitor.consumer.events
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    return ScenarioReport(scenario=scenario.name, checks=tuple(checks), produced=produced,
                          consumed=consumed, seconds=time.monotonic() - started)
