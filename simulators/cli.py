"""``cardmon simulate``: send recorded or synthetic card transactions to Kafka.

Two commands, both ending in :func:`simulators.producer.produce`:

* ``tabformer PATH``: replay an IBM TabFormer CSV (:mod:`simulators.tabformer`);
* ``synthetic``: a fleet of ATMs and POS terminals with injected faults
  (:mod:`simulators.synthetic`), optionally writing its VIP registry CSVs.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from aiokafka.errors import KafkaError
from rich.console import Console

from simulators.producer import produce
from simulators.synthetic import build_fleet, default_faults, synthetic_events, write_registry
from simulators.tabformer import TabFormerFormatError, frame_events, read_tabformer

__all__ = ["app"]

_DEFAULT_TOPIC: Final = "card.transactions"
_DEFAULT_BOOTSTRAP: Final = "127.0.0.1:9092"

app = typer.Typer(
    help="Send card transactions to Kafka: replay a TabFormer CSV or run a synthetic fleet.",
    no_args_is_help=True,
)
_console = Console(stderr=True)

BootstrapOption = Annotated[str, typer.Option(
    "--bootstrap-servers", envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka host:port list.",
)]
TopicOption = Annotated[str, typer.Option(help="Destination topic.")]
ProgressOption = Annotated[bool, typer.Option(help="Show a progress bar.")]


def _send(events: Any, *, bootstrap_servers: str, topic: str, speed: float | None,
          rebase_to_now: bool, progress: bool, total: int | None) -> None:
    try:
        sent = asyncio.run(produce(
            events, bootstrap_servers=bootstrap_servers, topic=topic, speed=speed,
            rebase_to_now=rebase_to_now, progress=progress, total=total,
        ))
    except KafkaError as error:
        _console.print(f"[red]Kafka at {bootstrap_servers} failed:[/red] {error}")
        raise typer.Exit(1) from error
    _console.print(f"sent {sent} event(s) to {topic} at {bootstrap_servers}")


@app.command()
def tabformer(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="TabFormer CSV file.")],
    bootstrap_servers: BootstrapOption = _DEFAULT_BOOTSTRAP,
    topic: TopicOption = _DEFAULT_TOPIC,
    timezone_name: Annotated[str, typer.Option(
        "--timezone", help="IANA time zone of the file's wall-clock times.")] = "UTC",
    speed: Annotated[float | None, typer.Option(
        min=0.0, help="Replay at this multiple of real time; omit to send as fast as possible.",
    )] = None,
    rebase_to_now: Annotated[bool, typer.Option(
        help="Shift all timestamps so the first event happens now (gaps kept).")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Send only the first N rows.")] = None,
    progress: ProgressOption = True,
) -> None:
    """Replay an IBM TabFormer card-transaction CSV."""
    try:
        ZoneInfo(timezone_name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise typer.BadParameter(f"unknown time zone {timezone_name!r}", param_hint="--timezone") from error
    try:
        frame = read_tabformer(path, timezone=timezone_name)
    except TabFormerFormatError as error:
        _console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    if limit is not None:
        frame = frame.head(limit)
    _send(frame_events(frame), bootstrap_servers=bootstrap_servers, topic=topic,
          speed=speed or None, rebase_to_now=rebase_to_now, progress=progress, total=frame.height)


@app.command()
def synthetic(
    bootstrap_servers: BootstrapOption = _DEFAULT_BOOTSTRAP,
    topic: TopicOption = _DEFAULT_TOPIC,
    terminals: Annotated[int, typer.Option(min=2, help="Number of ATMs and POS terminals.")] = 50,
    customers: Annotated[int, typer.Option(min=1, help="Number of clients, VIPs included.")] = 2_000,
    vips: Annotated[int, typer.Option(min=0, help="Number of VIP clients.")] = 24,
    vip_share: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Share of transactions made with a VIP's card.")] = 0.06,
    rate: Annotated[float, typer.Option(min=0.001, help="Mean events per second.")] = 200.0,
    duration: Annotated[float, typer.Option(
        min=0.0, help="Seconds of traffic; 0 runs until interrupted.")] = 60.0,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same fleet and traffic.")] = 7,
    faults: Annotated[bool, typer.Option(
        help="Inject the demo faults, scaled to --duration (60 s when unbounded): "
             "an ATM timing out, a POS answering 58, an issuer outage (91).",
    )] = True,
    speed: Annotated[float, typer.Option(
        min=0.0, help="Multiple of real time; 0 sends as fast as possible.")] = 1.0,
    registry_dir: Annotated[Path | None, typer.Option(
        file_okay=False, help="Write the VIP registry (customers.csv, managers.csv) here.")] = None,
    webhook_base_url: Annotated[str | None, typer.Option(
        help="Managers' webhook URL prefix in the registry ({base}/{manager_id}).")] = None,
    progress: ProgressOption = True,
) -> None:
    """Run a synthetic fleet of ATMs and POS terminals, with injected faults."""
    if vips > customers:
        raise typer.BadParameter("cannot exceed --customers", param_hint="--vips")
    fleet = build_fleet(terminals=terminals, customers=customers, vips=vips,
                        webhook_base_url=webhook_base_url, seed=seed)
    if registry_dir is not None:
        customers_path, managers_path = write_registry(fleet, registry_dir)
        _console.print(f"VIP registry written: {customers_path}, {managers_path}")
    run_for = duration or None
    scenario = default_faults(fleet, duration or 60.0) if faults else ()
    for fault in scenario:
        _console.print(f"fault: {fault}")
    events = synthetic_events(fleet, start=datetime.now(UTC), rate=rate,
                              duration_s=run_for, faults=scenario, vip_share=vip_share, seed=seed)
    total = round(rate * duration) if duration else None
    _send(events, bootstrap_servers=bootstrap_servers, topic=topic, speed=speed or None,
          rebase_to_now=False, progress=progress, total=total)
