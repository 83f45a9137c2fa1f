"""``cardmon demo``: the whole monitor with no installed services.

Starts the embedded broker (unless a Kafka is given), writes a small VIP registry
for a synthetic fleet, runs the monitor with the ``console`` and ``jsonl`` sinks,
feeds it real-time synthetic ATM/POS traffic with injected faults (a timing-out
ATM, a POS refusing everything, an issuer outage burst of 91s), serves
``/metrics`` and stops cleanly after ``duration`` seconds or on Ctrl-C.

The demo's managers are reachable: each has a webhook on a small receiver the demo
serves on 127.0.0.1 (:class:`DemoInbox`), which accepts every message and prints
one line for it, so their alerts and incident notices are really delivered and
read ``notified`` (the ``console`` and ``jsonl`` sinks only record them).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import tempfile
import uuid
from pathlib import Path
from typing import Final

import polars as pl
from aiohttp import web
from rich.console import Console
from rich.markup import escape

from monitor.app import MonitorApp
from monitor.config import isolated_settings
from monitor.kafka.clients import ensure_topics
from monitor.testing.broker import EmbeddedBroker
from simulators.fleet import build_fleet, write_registry
from simulators.producer import produce
from simulators.sources.synthetic import default_faults, synthetic_events

__all__ = ["DemoInbox", "run_demo"]


class DemoInbox:
    """The demo managers' webhook receiver: accepts every message, prints one line each.

    ``POST /managers/{manager_id}`` with the alert or notice payload (JSON) answers
    204. ``received`` counts the messages accepted.

    Args:
        console: where the one-line receipts are printed.
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self._runner: web.AppRunner | None = None
        self.received = 0
        self.url = ""

    async def start(self) -> str:
        """Serve on a free port of 127.0.0.1; return the base URL of the managers' webhooks."""
        app = web.Application()
        app.router.add_post("/managers/{manager_id}", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/managers"
        return self.url

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _receive(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.received += 1
        recipient = payload.get("recipient") or payload.get("manager") or {}
        who = recipient.get("name") or request.match_info["manager_id"]
        subject = payload.get("subject") or payload.get("alert_id") or "message"
        self._console.print(f"[green]→ delivered to {escape(str(who))}'s webhook[/]: "
                            f"{escape(str(subject))}", markup=True, highlight=False)
        return web.Response(status=204)


def _route_managers_to(managers_path: Path, inbox_url: str) -> None:
    """Point every manager's ``webhook_url`` of the registry file at the demo inbox."""
    managers = pl.read_csv(managers_path, infer_schema=False)
    managers.with_columns(
        webhook_url=pl.lit(inbox_url + "/") + pl.col("manager_id"),
    ).write_csv(managers_path)


#: Longest wait after the traffic's faults for held messages to go out: storm control's
#: group_wait (15 s, rules/alerting.yaml) plus a bucket and the allowed lateness.
SETTLE_SECONDS: Final = 35.0


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``stop`` is set (Ctrl-C); return whether it was set."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def _settled(monitor: MonitorApp, stop: asyncio.Event) -> None:
    """Wait until the outbox holds no pending message, at most :data:`SETTLE_SECONDS` or Ctrl-C."""
    deadline = asyncio.get_running_loop().time() + SETTLE_SECONDS
    while monitor.store.pending_count() and asyncio.get_running_loop().time() < deadline:
        if await _stopped(stop, 0.5):
            return


def _link_lifetime(duration: float) -> int:
    """Seconds the printed sign-in link lives: the whole demo and a few minutes, at least 15."""
    return max(900, int(duration + SETTLE_SECONDS) + 300)


async def run_demo(*, duration: float = 30.0, bootstrap_servers: str | None = None,
                   metrics_port: int = 9464, rate: float = 200.0, terminals: int = 40,
                   seed: int = 7, workdir: Path | None = None, api_port: int = 8465) -> int:
    """Run the demo; return the number of alerts stored.

    Args:
        duration: seconds of traffic with faults; the demo then waits (at most
            :data:`SETTLE_SECONDS`, healthy traffic going on) for the messages storm control
            holds to go out.
        bootstrap_servers: an existing Kafka; ``None`` starts the embedded broker.
        metrics_port: port of ``/metrics`` on 127.0.0.1.
        rate: synthetic transactions per second.
        terminals: terminals in the fleet.
        seed: seed of the fleet and its traffic.
        workdir: folder for the registry, alert store and ``alerts.jsonl`` (temp dir if ``None``).
        api_port: port of the alert API and the managers' workspace on 127.0.0.1; the
            demo prints a sign-in link of one manager's workspace (single use, valid
            while the demo runs).

    Raises:
        monitor.testing.broker.BrokerError: the embedded broker could not start.
    """
    console = Console(stderr=True)
    broker = EmbeddedBroker().start() if bootstrap_servers is None else None
    bootstrap = broker.bootstrap_servers if broker else str(bootstrap_servers)
    work = workdir or Path(tempfile.mkdtemp(prefix="cardmon-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    inbox: DemoInbox | None = None
    try:
        fleet = build_fleet(terminals=terminals, seed=seed)
        customers, managers = write_registry(fleet, work / "registry")
        inbox = DemoInbox(console)
        _route_managers_to(managers, await inbox.start())
        run_id = uuid.uuid4().hex[:8]
        settings = isolated_settings(
            kafka={"bootstrap_servers": bootstrap, "group_id": f"cardmon-demo-{run_id}",
                   "batch_timeout_ms": 100},
            registry={"customers_path": customers, "managers_path": managers},
            alerting={"store_path": work / "alerts.db", "sinks": ["console", "jsonl"],
                      "jsonl_path": work / "alerts.jsonl", "poll_interval_seconds": 0.1},
            metrics={"host": "127.0.0.1", "port": metrics_port},
            api={"host": "127.0.0.1", "port": api_port},
            # A secret of this run only: the printed link dies with the demo.
            workspace={"enabled": True, "secret": secrets.token_hex(32),
                       "sign_in_max_age_seconds": _link_lifetime(duration)},
        )
        await ensure_topics(settings.kafka)
        monitor = MonitorApp(settings)
        console.print(
            f"[bold]cardmon demo[/]: broker {bootstrap}"
            f"{' (embedded Tansu, in memory)' if broker else ''}; "
            f"{len(fleet.terminals)} terminals, {len(fleet.vips)} VIP clients of "
            f"{len(fleet.managers)} managers; metrics at http://127.0.0.1:{metrics_port}/metrics; "
            f"files in {work}; faults for {duration:g} s (Ctrl-C stops sooner). The console "
            f"shows each alert as it is stored; a manager's webhook gets it once storm "
            f"control's hold (15 s) is over."
        )
        if monitor.workspace is not None:
            manager = fleet.managers[0]
            token = monitor.workspace.tokens.issue(manager.manager_id)
            console.print(
                f"[bold]cardmon demo[/]: {escape(manager.name)}'s workspace (their clients' "
                f"alerts) once the monitor is up: "
                f"http://127.0.0.1:{api_port}/workspace/sign-in/{token} "
                "(sign-in link: single use, valid while the demo runs)", soft_wrap=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        monitor_task = asyncio.create_task(monitor.run(stop, create_topics=False))
        # The faults fall inside ``duration``; healthy traffic goes on while the demo
        # settles, so event time moves on and storm control judges the last buckets.
        events = synthetic_events(fleet, rate=rate, duration_s=duration + SETTLE_SECONDS + 5.0,
                                  faults=default_faults(fleet, duration), seed=seed)
        producer_task = asyncio.create_task(produce(
            events, bootstrap_servers=bootstrap, topic=settings.kafka.topic, speed=1.0))
        if not await _stopped(stop, duration + 2.0):
            pending = monitor.store.pending_count()
            if pending:
                console.print(f"[bold]cardmon demo[/]: faults over; waiting up to {SETTLE_SECONDS:g} s "
                              f"for {pending} message(s) storm control is holding or still sending "
                              "(Ctrl-C stops sooner).")
                await _settled(monitor, stop)
        pending = monitor.store.pending_count()
        stop.set()
        producer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer_task
        await monitor_task
        alerts = monitor.store_summary
        store = settings.alerting.store_path
        console.print(
            f"[bold]cardmon demo finished[/]: {monitor.consumer.events} transactions processed, "
            f"{alerts} VIP alerts stored in {store}, {inbox.received} messages delivered to the "
            f"managers' webhooks; `cardmon alerts export --store {store}` lists them. Storm "
            f"control found {monitor.incident_summary} incident(s) (outages of a terminal, region, "
            f"issuer or the network; each manager got one message per incident): "
            f"`cardmon incidents list --store {store}`."
            + (f" {pending} message(s) were still waiting (held for working hours, storm control "
               "or a retry); the next `cardmon run` on that store sends them." if pending else "")
        )
        return alerts
    finally:
        if inbox is not None:
            await inbox.stop()
        if broker is not None:
            broker.stop()
