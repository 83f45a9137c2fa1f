"""The service commands: ``cardmon run``, ``demo``, ``broker``, ``version``, and how they end.

Each loads what it runs when it runs (``cardmon --help`` stays fast). An error an
operator can fix (a file, a port, the broker, the alert store) ends the command with
one line and exit 1 (``--verbose``: the traceback); SIGINT and SIGTERM stop the
service cleanly, exit 0.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from monitor._version import __version__
from monitor.cli.settings import ConfigOption, load_settings_or_exit

__all__ = ["broker", "clear_errors", "configure_logging", "demo", "run", "stop_on_signals", "version"]


def configure_logging(verbose: bool) -> None:
    """Log to stderr (DEBUG with ``verbose``); quiet the libraries that log secrets or noise."""
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


@contextmanager
def clear_errors(verbose: bool) -> Iterator[None]:
    """Turn the errors an operator can fix (files, ports, broker) into one line and exit 1."""
    from aiokafka.errors import KafkaError

    from monitor.alerts.store.db import DATABASE_ERRORS
    from monitor.errors import CardmonError
    from monitor.secrets import redact_url

    # Every refusal of cardmon (a rule file, registry, setting or broker it could not
    # use, a retry that ran out: monitor.errors), the broker client's, the file system's
    # and the alert store's.
    fixable = (CardmonError, KafkaError, OSError, *DATABASE_ERRORS)
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


def stop_on_signals(stop: asyncio.Event) -> None:
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


def version() -> None:
    """Print cardmon's version."""
    typer.echo(__version__)


def run(config: ConfigOption = None,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging, tracebacks on errors.")] = False) -> None:
    """Run the monitor service against the configured Kafka until SIGINT/SIGTERM."""
    from monitor.app import MonitorApp

    settings = load_settings_or_exit(config)
    configure_logging(verbose)

    async def _main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        await MonitorApp(settings).run(stop)

    with clear_errors(verbose):
        asyncio.run(_main())


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
    api_port: Annotated[int, typer.Option(
        help="Port of the alert API and the managers' workspace on 127.0.0.1.")] = 8465,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging, tracebacks on errors.")] = False,
) -> None:
    """Run everything with no installed services: broker, simulator, monitor, /metrics."""
    from simulators.demo import run_demo

    configure_logging(verbose)
    with clear_errors(verbose):
        asyncio.run(run_demo(duration=duration, bootstrap_servers=bootstrap_servers,
                             metrics_port=metrics_port, rate=rate, terminals=terminals,
                             seed=seed, workdir=workdir, api_port=api_port))


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
        with clear_errors(False), EmbeddedBroker(host=host, port=port) as embedded:
            typer.echo(f"embedded broker ready: bootstrap servers {embedded.bootstrap_servers} "
                       "(data in memory; Ctrl-C to stop)")
            while embedded.running and not stopping.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass  # the with-block (or start() itself) has stopped Tansu
