"""The ``cardmon`` command line (Typer).

``cardmon run``       the monitor service against the configured Kafka;
``cardmon demo``      everything on an embedded broker with synthetic traffic;
``cardmon broker``    the embedded Kafka-compatible broker alone;
``cardmon simulate``  replay recorded files or synthetic fleets into Kafka;
``cardmon alerts``    the alert store: ``export``, ``list``, ``ack``, ``resolve``, ``resend``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import signal
import sqlite3
import sys
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer

from monitor._version import __version__

if TYPE_CHECKING:
    import pydantic

    from monitor.alerts.store import AlertStore
    from monitor.config import Settings

__all__ = ["app", "main"]

app = typer.Typer(help="cardmon: card-transaction health monitor for VIP clients and terminals.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)
alerts_app = typer.Typer(help="The alert store: export, list, acknowledge, resolve, re-send.",
                         no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")

incidents_app = typer.Typer(help="Storm-control incidents: outages of a terminal, merchant, region, "
                            "issuer or the network.", no_args_is_help=True)
app.add_typer(incidents_app, name="incidents")

dashboards_app = typer.Typer(help="Grafana dashboards: regenerate the JSON, upload it.",
                             no_args_is_help=True)
app.add_typer(dashboards_app, name="dashboards")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings file (default: $CARDMON_CONFIG or ./cardmon.yaml)."),
]


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # HTTP clients log whole request URLs at INFO: webhook and chat URLs carry tokens.
    for name in ("httpx", "httpcore", "urllib3", "niquests"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def _settings(config: Path | None) -> Settings:
    """Load the settings, or exit 2 with a one-line reason (no traceback) when they are bad."""
    import pydantic

    from monitor.config import load_settings

    try:
        return load_settings(config)
    except FileNotFoundError as error:
        typer.echo(f"cardmon: {error}", err=True)
        raise typer.Exit(2) from None
    except pydantic.ValidationError as error:
        typer.echo(f"cardmon: invalid settings: {_settings_errors(error)}", err=True)
        raise typer.Exit(2) from None


# Settings whose values are never quoted back (they may hold a password or a token).
_SECRET_PARTS: Final = ("password", "secret", "token", "url", "apprise")


def _settings_errors(error: pydantic.ValidationError) -> str:
    """Each problem as ``place: message (got value)``; a value is quoted only when harmless.

    A value is shown when it is a short scalar of a field whose name does not suggest a
    secret; a model-level error (whose input is the whole section) never shows one.
    """
    lines = []
    for problem in error.errors():
        place = ".".join(str(part) for part in problem["loc"]) or "settings"
        given = problem.get("input")
        names = " ".join(str(part).lower() for part in problem["loc"])
        shown = (isinstance(given, (str, int, float)) and len(str(given)) <= 80
                 and not any(part in names for part in _SECRET_PARTS))
        lines.append(f"{place}: {problem['msg']}" + (f" (got {given!r})" if shown else ""))
    return "; ".join(lines)


@contextmanager
def _clear_errors(verbose: bool) -> Iterator[None]:
    """Turn the errors an operator can fix (files, ports, broker) into one line and exit 1."""
    from aiokafka.errors import KafkaError

    from monitor.alerts.lifecycle import EscalationRulesError
    from monitor.alerts.ratelimit import RateLimitError
    from monitor.alerts.store.db import DATABASE_ERRORS, redact_url
    from monitor.faults import RetryTimeout
    from monitor.health.terminals import TerminalRegistryError
    from monitor.hours import OpeningHoursError
    from monitor.incidents import IncidentRulesError
    from monitor.pipeline.classify import ResponseCodeError
    from monitor.pipeline.selection import PolicyError
    from monitor.pipeline.vips import RegistryError
    from monitor.testing.broker import BrokerError

    fixable = (RegistryError, PolicyError, ResponseCodeError, BrokerError, KafkaError, OSError,
               TerminalRegistryError, OpeningHoursError, EscalationRulesError, IncidentRulesError,
               RateLimitError, RetryTimeout, *DATABASE_ERRORS)
    try:
        yield
    except fixable as error:
        if verbose:
            raise
        message = str(error) or type(error).__name__
        if isinstance(error, DATABASE_ERRORS):  # the alert store; a URL in it loses its password
            message = "alert store: " + re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://\S+",
                                               lambda m: redact_url(m.group(0)), message)
        if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
            message = f"{message} (is another cardmon or exporter on that port? try another port)"
        typer.echo(f"cardmon: {message}", err=True)
        raise typer.Exit(1) from None


def _stop_on_signals(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM set ``stop``: the service shuts down cleanly and exits 0.

    The shutdown is bounded (``alerting.shutdown_drain_seconds`` for in-flight sends,
    seconds for the rest), so a second signal only says that it is under way.
    """
    loop = asyncio.get_running_loop()
    log = logging.getLogger("monitor.cli")

    def received(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("%s received: already stopping, within a bounded time", sig.name)
            return
        log.info("%s received: stopping", sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, received, sig)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            pass


@app.command()
def version() -> None:
    """Print cardmon's version."""
    typer.echo(__version__)


@app.command()
def run(config: ConfigOption = None,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging, tracebacks on errors.")] = False) -> None:
    """Run the monitor service against the configured Kafka until SIGINT/SIGTERM."""
    from monitor.app import MonitorApp

    settings = _settings(config)
    _logging(verbose)

    async def _main() -> None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        await MonitorApp(settings).run(stop)

    with _clear_errors(verbose):
        asyncio.run(_main())


@app.command()
def demo(
    duration: Annotated[float, typer.Option(help="Seconds to run before stopping cleanly.")] = 30.0,
    bootstrap_servers: Annotated[str | None, typer.Option(
        help="Use this Kafka instead of starting the embedded broker.")] = None,
    metrics_port: Annotated[int, typer.Option(help="Port for /metrics on 127.0.0.1.")] = 9464,
    rate: Annotated[float, typer.Option(help="Synthetic transactions per second.")] = 200.0,
    terminals: Annotated[int, typer.Option(help="Terminals in the synthetic fleet.")] = 40,
    seed: Annotated[int, typer.Option(help="Random seed of the synthetic fleet.")] = 7,
    workdir: Annotated[Path | None, typer.Option(
        help="Where the demo keeps its registry, alert store and alerts.jsonl (default: a temp dir).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging, tracebacks on errors.")] = False,
) -> None:
    """Run everything with no installed services: broker, simulator, monitor, /metrics."""
    from simulators.demo import run_demo

    _logging(verbose)
    with _clear_errors(verbose):
        asyncio.run(run_demo(duration=duration, bootstrap_servers=bootstrap_servers,
                             metrics_port=metrics_port, rate=rate, terminals=terminals,
                             seed=seed, workdir=workdir))


@app.command()
def broker(
    host: Annotated[str, typer.Option(help="Address to listen on and advertise.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Kafka port.")] = 9092,
) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, in memory) until Ctrl-C."""
    from monitor.testing.broker import EmbeddedBroker

    stopping = threading.Event()  # set by SIGTERM (systemd, container stop); Ctrl-C raises as usual

    def _terminate(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _terminate)
    try:
        with _clear_errors(False), EmbeddedBroker(host=host, port=port) as embedded:
            typer.echo(f"embedded broker ready: bootstrap servers {embedded.bootstrap_servers} "
                       "(data in memory; Ctrl-C to stop)")
            while embedded.running and not stopping.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass  # the with-block (or start() itself) has stopped Tansu


class ExportFormat(str, Enum):
    jsonl = "jsonl"


StoreOption = Annotated[str | None, typer.Option(
    help="Alert store: a SQLite file or a postgresql:// URL (default: from settings).")]


class ListState(str, Enum):
    open = "open"
    notified = "notified"
    acknowledged = "acknowledged"
    resolved = "resolved"
    failed = "failed"


@contextmanager
def _alert_store(config: Path | None, store: str | None) -> Iterator[AlertStore]:
    """Open an existing alert store (never create a SQLite file on a typo), or exit 1 with the reason.

    A PostgreSQL URL's password is never printed.
    """
    from monitor.alerts.store import AlertStore
    from monitor.alerts.store.db import (
        DATABASE_ERRORS,
        is_transient,
        is_url,
        redact_secret,
        redact_url,
    )
    from monitor.config import PostgresSettings

    if store is not None:
        location: str | Path = store
        postgres = PostgresSettings()
    else:
        alerting = _settings(config).alerting
        location, postgres = alerting.store_location(), alerting.postgres
    if is_url(location):
        shown = redact_url(str(location))
    else:
        location = Path(location)
        shown = str(location)
        if not location.is_file():
            typer.echo(f"no alert store at {location}", err=True)
            raise typer.Exit(1)
        if (reason := _not_a_store(location)) is not None:
            typer.echo(f"cannot read alert store {shown}: {reason}", err=True)
            raise typer.Exit(1)
    try:
        alert_store = AlertStore(location, postgres=postgres)
    except DATABASE_ERRORS as error:
        reason = redact_secret(str(error), str(location)) if is_url(location) else str(error)
        typer.echo(f"cannot read alert store {shown}: {reason}", err=True)
        raise typer.Exit(1) from None
    try:
        yield alert_store
    except DATABASE_ERRORS as error:
        reason = redact_secret(str(error), str(location)) if is_url(location) else str(error)
        hint = " (transient: try again)" if is_transient(error) else ""
        typer.echo(f"alert store {shown} failed{hint}: {type(error).__name__}: {reason}", err=True)
        raise typer.Exit(1) from None
    finally:
        alert_store.close()


def _not_a_store(path: Path) -> str | None:
    """Why a SQLite file is not a cardmon alert store (``None`` if it is one).

    Read only: a command given another application's database, or an empty file, must
    refuse it, not create cardmon's tables in it.
    """
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        return str(error)
    if version == 0 or "alerts" not in tables:
        return "not a cardmon alert store (no cardmon schema in it)"
    return None


@alerts_app.command("export")
def alerts_export(
    config: ConfigOption = None,
    store: StoreOption = None,
    format: Annotated[ExportFormat, typer.Option("--format", help="Output format.")] = ExportFormat.jsonl,
) -> None:
    """Print every stored alert with its state, history and events, one JSON object per line."""
    from monitor.alerts.export import export_jsonl

    with _alert_store(config, store) as alert_store:
        export_jsonl(alert_store, sys.stdout)


def _change(alert_store: AlertStore, what: str, alert_id: str, by: str, note: str | None) -> None:
    """Acknowledge or resolve through the CLI; print the outcome or exit 1 with the reason."""
    from monitor.alerts.states import AlertNotFoundError, StateConflictError

    try:
        if what == "acknowledged":
            result = alert_store.acknowledge(alert_id, by=by, via="cli", note=note)
        else:
            result = alert_store.resolve(alert_id, by=by, via="cli", note=note or "")
    except AlertNotFoundError:
        typer.echo(f"no alert {alert_id}", err=True)
        raise typer.Exit(1) from None
    except (StateConflictError, ValueError) as error:
        typer.echo(f"cannot mark {alert_id} {what}: {error}", err=True)
        raise typer.Exit(1) from None
    if result.changed:
        typer.echo(f"{alert_id} {what} by {by}")
    else:
        typer.echo(f"{alert_id} was already {result.state}; nothing changed")


@alerts_app.command("ack")
def alerts_ack(
    alert_id: Annotated[str, typer.Argument(help="The alert ID (al-...).")],
    by: Annotated[str, typer.Option("--by", help="Who acknowledges (manager ID or your name).")],
    note: Annotated[str | None, typer.Option("--note", help="Optional note.")] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Acknowledge an alert (stops its escalation); acknowledging twice changes nothing."""
    with _alert_store(config, store) as alert_store:
        _change(alert_store, "acknowledged", alert_id, by, note)


@alerts_app.command("resolve")
def alerts_resolve(
    alert_id: Annotated[str, typer.Argument(help="The alert ID (al-...).")],
    note: Annotated[str, typer.Option("--note", help="What was done (required).")],
    by: Annotated[str | None, typer.Option("--by", help="Who resolves (default: your login name).")] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Resolve an acknowledged alert with a note saying what was done."""
    import getpass

    with _alert_store(config, store) as alert_store:
        _change(alert_store, "resolved", alert_id, by or getpass.getuser(), note)


@alerts_app.command("resend")
def alerts_resend(
    alert_id: Annotated[str | None, typer.Argument(
        help="The alert ID (al-...), or an incident notice, summary or digest ID.")] = None,
    all_failed: Annotated[bool, typer.Option(
        "--all-failed", help="Every failed delivery of the store instead of one alert's.")] = False,
    by: Annotated[str | None, typer.Option("--by", help="Who re-sends (default: your login name).")] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Put failed deliveries back in the outbox, due at once; the running monitor sends them.

    A failed alert is open again; its history records who re-sent it. Each re-sent
    delivery starts a new retry window (alerting.retry_for_seconds).
    """
    import getpass

    from monitor.alerts.states import AlertNotFoundError

    if (alert_id is None) == (not all_failed):
        typer.echo("give an alert ID or --all-failed (not both)", err=True)
        raise typer.Exit(2)
    who = by or getpass.getuser()
    with _alert_store(config, store) as alert_store:
        try:
            result = alert_store.resend(None if all_failed else alert_id, by=who, via="cli")
        except AlertNotFoundError:
            typer.echo(f"no alert {alert_id}", err=True)
            raise typer.Exit(1) from None
        except ValueError as error:
            typer.echo(f"cannot re-send: {error}", err=True)
            raise typer.Exit(1) from None
    what = "the store" if all_failed else alert_id
    if not result.deliveries:
        typer.echo(f"{what} has no failed delivery; nothing changed")
        return
    typer.echo(f"re-queued {result.deliveries} failed deliveries of {what} "
               f"({', '.join(result.message_ids)}) for {who}; the running monitor sends them now")
    if result.alert_ids:
        typer.echo(f"alerts concerned: {', '.join(result.alert_ids)}")


@alerts_app.command("list")
def alerts_list(
    state: Annotated[ListState | None, typer.Option("--state", help="Only alerts in this state.")] = None,
    manager: Annotated[str | None, typer.Option("--manager", help="Only this manager's alerts (manager ID).")] = None,
    late: Annotated[bool, typer.Option(
        "--late", help="Only late alerts (stale events recorded without paging anyone).")] = False,
    unrouted: Annotated[bool, typer.Option(
        "--unroutable", help="Only alerts no configured channel could route to their manager.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="Most alerts to show.")] = 50,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """List alerts, newest first: ID, state, delivery, severity, manager, client, recorded time (UTC), events.

    DELIVERY is what happened to the alert's messages to people: notified, pending,
    failed, late (nobody paged: stale events), unrouted (no channel reaches the
    manager, or a notice or summary carries it), merged (in an incident notice).
    """
    with _alert_store(config, store) as alert_store:
        page = alert_store.find_alerts(state=state.value if state else None,
                                       manager_id=manager, limit=limit,
                                       late=True if late else None,
                                       unroutable=True if unrouted else None)
    rows = [("ALERT", "STATE", "DELIVERY", "SEVERITY", "MANAGER", "CLIENT", "RECORDED (UTC)", "EVENTS")]
    rows += [(a.alert_id, page.states[a.alert_id], a.status, a.severity, a.manager.manager_id,
              f"{a.customer_name} ({a.customer_id})", a.created_at.strftime("%Y-%m-%d %H:%M:%S"),
              str(a.event_count)) for a in page.alerts]
    _table(rows)
    if page.next_cursor is not None:
        typer.echo(f"(showing the newest {limit}; use --limit for more)", err=True)


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@incidents_app.command("list")
def incidents_list(
    open_only: Annotated[bool, typer.Option("--open", help="Only incidents that have not ended.")] = False,
    top_level: Annotated[bool, typer.Option(
        "--top-level", help="Leave out incidents a broader one holds (a terminal in a network outage).")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="Most incidents to show.")] = 50,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """List incidents, latest start first: ID, scope and key, start and end (event time, UTC), scale, VIP alerts."""
    with _alert_store(config, store) as alert_store:
        incidents = alert_store.list_incidents(open_only=open_only, top_level=top_level, limit=limit)
    rows = [("INCIDENT", "SCOPE", "KEY", "STARTED (UTC)", "ENDED (UTC)", "FAILURES", "ALERTS",
             "MANAGERS", "NOTE")]
    rows += [(i.incident_id, i.scope, i.scope_key, i.started_at.strftime("%Y-%m-%d %H:%M:%S"),
              i.ended_at.strftime("%Y-%m-%d %H:%M:%S") if i.ended_at else "open", str(i.failures),
              str(i.alert_count), str(i.manager_count),
              "; ".join(filter(None, (i.note, f"inside {i.parent_id}" if i.parent_id else None))))
             for i in incidents]
    _table(rows)


@dashboards_app.command("build")
def dashboards_build(
    check: Annotated[bool, typer.Option(
        "--check", help="Write nothing; exit 1 if dashboards/json is stale.")] = False,
) -> None:
    """Regenerate dashboards/json/*.json from the Python source (needs the 'dashboards' extra)."""
    try:
        from dashboards.build import main as build_main
    except ModuleNotFoundError as error:
        typer.echo(f"cardmon: {error.name} is missing: pip install 'cardmon[dashboards]'", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(build_main(["--check"] if check else []))


@dashboards_app.command("push")
def dashboards_push(
    url: Annotated[str, typer.Option("--url", help="Grafana base URL, e.g. http://127.0.0.1:3000.")],
    folder: Annotated[str, typer.Option(
        "--folder", help="Grafana folder title (created if missing).")] = "cardmon",
) -> None:
    """Upload the dashboards into a Grafana folder, overwriting by UID.

    The token comes from $GRAFANA_TOKEN (or $GRAFANA_API_KEY), never from the command line.
    """
    from dashboards.push import PushError, push, token_from_env

    token = token_from_env()
    if token is None and "@" not in url:
        typer.echo("cardmon: set GRAFANA_TOKEN (or GRAFANA_API_KEY) to a Grafana "
                   "service-account token", err=True)
        raise typer.Exit(2)
    try:
        result = push(url, token, folder=folder)
    except PushError as error:
        typer.echo(f"cardmon: {error}", err=True)
        raise typer.Exit(1) from None
    state = "created" if result.folder_created else "existing"
    typer.echo(f"{len(result.dashboards)} dashboards in {state} folder {folder!r} "
               f"(uid {result.folder_uid}):")
    for uid, path in result.dashboards.items():
        typer.echo(f"  {uid}  {url.rstrip('/')}{path}")


def _mount_simulators() -> None:
    from simulators.cli import app as simulate_app

    app.add_typer(simulate_app, name="simulate", help="Replay recorded or synthetic traffic into Kafka.")


_mount_simulators()


def main() -> None:
    """Console-script entry point."""
    # One series per counter, not two: *_created doubles the scrape for no dashboard use.
    from prometheus_client import disable_created_metrics

    disable_created_metrics()  # type: ignore[no-untyped-call]
    app()
