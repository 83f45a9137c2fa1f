"""``cardmon simulate``: send recorded or synthetic card transactions to Kafka.

Commands ending in :func:`simulators.producer.produce`:

* ``tabformer PATH``: replay an IBM TabFormer CSV (:mod:`simulators.sources.tabformer`);
* ``synthetic``: a fleet of ATMs and POS terminals with injected faults
  (:mod:`simulators.sources.synthetic`), optionally writing its VIP registry CSVs;
* ``registry DIR``: only write the synthetic fleet's VIP registry (for a monitor
  that starts before the simulator, as in ``docker-compose.yml``);
* ``replay PATH``: recorded canonical-schema traffic (JSON lines, CSV, Parquet;
  :mod:`simulators.sources.replay`);
* ``scenario NAME [--check]``: a fault scenario of the library through Kafka and
  a monitor, compared with its expected outcome (:mod:`simulators.scenario`).

And one that sends nothing: ``what-if --recording FILE --rules DIR`` replays a
recording offline through the current and a proposed ``rules/`` and prints what each
would have sent, per manager (:mod:`simulators.whatif`, ``docs/what-if.md``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.markup import escape

from simulators.fleet import build_fleet, write_registry
from simulators.producer import DEFAULT_RETRY_SECONDS, produce
from simulators.scenario.running import run_scenario
from simulators.scenario.schema import ScenarioError, list_scenarios, resolve_scenario
from simulators.sources.replay import RecordingFormatError, replay
from simulators.sources.synthetic import default_faults, synthetic_events
from simulators.sources.tabformer import TabFormerFormatError, frame_events, read_tabformer

if TYPE_CHECKING:
    from simulators.whatif import WhatIf

__all__ = ["app"]

_DEFAULT_TOPIC: Final = "card.transactions"
_DEFAULT_BOOTSTRAP: Final = "127.0.0.1:9092"

app = typer.Typer(
    help="Send card transactions to Kafka (a TabFormer CSV, a recording, a synthetic fleet), "
         "or replay a recording offline through a proposed rules/ (what-if).",
    no_args_is_help=True,
)
_console = Console(stderr=True)

BootstrapOption = Annotated[str, typer.Option(
    "--bootstrap-servers", envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka host:port list.",
)]
TopicOption = Annotated[str, typer.Option(help="Destination topic.")]
ProgressOption = Annotated[bool, typer.Option(help="Show a progress bar.")]
RetryOption = Annotated[float, typer.Option(
    "--retry-seconds", min=0.0,
    help="How long a broker that is down, paused or restarting is waited for before giving up.")]


def _send(events: Any, *, bootstrap_servers: str, topic: str, speed: float | None,
          rebase_to_now: bool, progress: bool, total: int | None, retry_seconds: float) -> None:
    try:
        sent = asyncio.run(produce(
            events, bootstrap_servers=bootstrap_servers, topic=topic, speed=speed,
            rebase_to_now=rebase_to_now, progress=progress, total=total,
            retry_seconds=retry_seconds,
        ))
    except KafkaError as error:
        _console.print(f"[red]Kafka at {escape(str(bootstrap_servers))} failed:[/red] "
                       f"{escape(str(error))}")
        raise typer.Exit(1) from error
    _console.print(f"sent {sent} event(s) to {topic} at {bootstrap_servers}", markup=False)


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
    retry_seconds: RetryOption = DEFAULT_RETRY_SECONDS,
) -> None:
    """Replay an IBM TabFormer card-transaction CSV."""
    try:
        ZoneInfo(timezone_name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise typer.BadParameter(f"unknown time zone {timezone_name!r}", param_hint="--timezone") from error
    try:
        frame = read_tabformer(path, timezone=timezone_name)
    except TabFormerFormatError as error:
        _console.print(f"[red]{escape(str(error))}[/red]")
        raise typer.Exit(1) from error
    if limit is not None:
        frame = frame.head(limit)
    _send(frame_events(frame), bootstrap_servers=bootstrap_servers, topic=topic,
          speed=speed or None, rebase_to_now=rebase_to_now, progress=progress, total=frame.height,
          retry_seconds=retry_seconds)


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
    retry_seconds: RetryOption = DEFAULT_RETRY_SECONDS,
) -> None:
    """Run a synthetic fleet of ATMs and POS terminals, with injected faults."""
    if vips > customers:
        raise typer.BadParameter("cannot exceed --customers", param_hint="--vips")
    fleet = build_fleet(terminals=terminals, customers=customers, vips=vips,
                        webhook_base_url=webhook_base_url, seed=seed)
    if registry_dir is not None:
        customers_path, managers_path = write_registry(fleet, registry_dir)
        _console.print(f"VIP registry written: {customers_path}, {managers_path}", markup=False)
    run_for = duration or None
    scenario = default_faults(fleet, duration or 60.0) if faults else ()
    for fault in scenario:
        _console.print(f"fault: {fault!r}", markup=False)
    events = synthetic_events(fleet, start=datetime.now(UTC), rate=rate,
                              duration_s=run_for, faults=scenario, vip_share=vip_share, seed=seed)
    total = round(rate * duration) if duration else None
    _send(events, bootstrap_servers=bootstrap_servers, topic=topic, speed=speed or None,
          rebase_to_now=False, progress=progress, total=total, retry_seconds=retry_seconds)


@app.command()
def registry(
    directory: Annotated[Path, typer.Argument(file_okay=False, help="Folder for customers.csv and managers.csv.")],
    terminals: Annotated[int, typer.Option(min=2, help="As for `synthetic`.")] = 50,
    customers: Annotated[int, typer.Option(min=1, help="As for `synthetic`.")] = 2_000,
    vips: Annotated[int, typer.Option(min=0, help="As for `synthetic`.")] = 24,
    seed: Annotated[int, typer.Option(help="As for `synthetic`: the same seed gives the same clients.")] = 7,
    webhook_base_url: Annotated[str | None, typer.Option(help="As for `synthetic`.")] = None,
) -> None:
    """Write the synthetic fleet's VIP registry only (no traffic)."""
    if vips > customers:
        raise typer.BadParameter("cannot exceed --customers", param_hint="--vips")
    fleet = build_fleet(terminals=terminals, customers=customers, vips=vips,
                        webhook_base_url=webhook_base_url, seed=seed)
    customers_path, managers_path = write_registry(fleet, directory)
    _console.print(f"VIP registry written: {customers_path}, {managers_path}", markup=False)


@app.command("replay")
def replay_command(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Recording file.")],
    bootstrap_servers: BootstrapOption = _DEFAULT_BOOTSTRAP,
    topic: TopicOption = _DEFAULT_TOPIC,
    fmt: Annotated[str, typer.Option(
        "--format", help="auto (by suffix), jsonl, csv or parquet.")] = "auto",
    speed: Annotated[float, typer.Option(
        min=0.0, help="Multiple of real time, keeping the gaps; 0 sends as fast as possible.")] = 0.0,
    loop: Annotated[int, typer.Option(
        min=0, help="Play the recording N times (each loop later, event IDs suffixed -L{n}); 0 = forever.",
    )] = 1,
    rebase_to_now: Annotated[bool, typer.Option(
        help="Shift all timestamps so the first event happens now (gaps kept).")] = False,
    jitter: Annotated[float, typer.Option(
        min=0.0, help="Move each event by a random offset within ± this many seconds.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the jitter: same seed, same replay.")] = 0,
    progress: ProgressOption = True,
    retry_seconds: RetryOption = DEFAULT_RETRY_SECONDS,
) -> None:
    """Replay recorded canonical-schema traffic (JSON lines, CSV or Parquet)."""
    if fmt not in ("auto", "jsonl", "csv", "parquet"):
        raise typer.BadParameter(f"unknown format {fmt!r}", param_hint="--format")
    try:
        sent = asyncio.run(replay(
            path, bootstrap_servers=bootstrap_servers, topic=topic, fmt=fmt,  # type: ignore[arg-type]
            speed=speed or None, loops=loop or None, rebase_to_now=rebase_to_now,
            jitter_s=jitter, seed=seed, progress=progress, retry_seconds=retry_seconds,
        ))
    except RecordingFormatError as error:
        _console.print(f"[red]{escape(str(error))}[/red]")
        raise typer.Exit(1) from error
    except KafkaError as error:
        _console.print(f"[red]Kafka at {escape(str(bootstrap_servers))} failed:[/red] "
                       f"{escape(str(error))}")
        raise typer.Exit(1) from error
    _console.print(f"sent {sent} event(s) to {topic} at {bootstrap_servers}", markup=False)


@app.command()
def scenario(
    name: Annotated[str | None, typer.Argument(
        help="Scenario name (see --list) or path of a scenario file.")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Compare with the expected outcome; exit 1 if any expectation fails.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the scenario library.")] = False,
    bootstrap_servers: Annotated[str | None, typer.Option(
        "--bootstrap-servers", envvar="KAFKA_BOOTSTRAP_SERVERS",
        help="An existing Kafka; default: the embedded broker.")] = None,
    workdir: Annotated[Path | None, typer.Option(
        file_okay=False, help="Keep the registry, alert store and alerts.jsonl here.")] = None,
    timeout: Annotated[float, typer.Option(min=1.0, help="Seconds to wait for the monitor.")] = 60.0,
) -> None:
    """Run a fault scenario through Kafka and the monitor (embedded broker unless given)."""
    if list_:
        for known in list_scenarios():
            description = resolve_scenario(known).description
            typer.echo(f"{known:<20} {description.split('. ')[0].strip()}")
        return
    if name is None:
        raise typer.BadParameter("give a scenario name or --list", param_hint="NAME")
    try:
        loaded = resolve_scenario(name)
    except ScenarioError as error:
        _console.print(f"[red]{escape(str(error))}[/red]")
        raise typer.Exit(2) from error
    try:
        report = asyncio.run(run_scenario(loaded, bootstrap_servers=bootstrap_servers,
                                          workdir=workdir, timeout=timeout))
    except (KafkaError, TimeoutError) as error:
        _console.print(f"[red]scenario {escape(loaded.name)} could not run:[/red] "
                       f"{escape(str(error))}")
        raise typer.Exit(1) from error
    if check:
        typer.echo(report.render())
        raise typer.Exit(0 if report.passed else 1)
    typer.echo(f"scenario {report.scenario}: {report.produced} events, "
               f"{report.consumed} consumed in {report.seconds:.1f} s")


def _print_what_if(result: WhatIf, recording: Path, json_path: Path | None, show: int) -> None:
    import json

    from simulators.whatif import render_json, render_text

    typer.echo(render_text(result, recording=recording, limit=show))
    if json_path is not None:
        json_path.write_text(json.dumps(render_json(result), indent=2) + "\n", encoding="utf-8")
        _console.print(f"what-if written as JSON to {json_path}", markup=False)


@app.command("what-if")
def what_if_command(
    recording: Annotated[Path, typer.Option(
        "--recording", exists=True, dir_okay=False, help="Recorded traffic (JSON lines, CSV, Parquet, TabFormer).")],
    rules: Annotated[Path, typer.Option(
        "--rules", help="Folder of proposed rule files (alerting.yaml, response_codes.yaml, health.yaml); "
                        "a file it lacks is the current one.")],
    fmt: Annotated[str, typer.Option(
        "--format", help="auto (by suffix), jsonl, csv, parquet or tabformer (an IBM TabFormer CSV).")] = "auto",
    timezone_name: Annotated[str, typer.Option(
        "--timezone", help="IANA time zone of a TabFormer file's wall-clock times.")] = "UTC",
    registry: Annotated[Path | None, typer.Option(
        "--registry", file_okay=False, help="VIP registry folder (customers.csv, managers.csv); "
                                            "default: the settings' registry.")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="YAML settings file (default: $CARDMON_CONFIG or ./cardmon.yaml).")] = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", dir_okay=False, help="Also write the whole comparison as JSON here.")] = None,
    show: Annotated[int, typer.Option(min=0, help="Most alerts listed per list in the text.")] = 50,
    batch: Annotated[int, typer.Option(min=1, help="Most events per processed batch.")] = 1_000,
) -> None:
    """Replay a recording through the current and the proposed rules, offline; print what each would send."""
    # Loaded when run: the whole monitor (store, processor, health) stays out of --help.
    from monitor.cli.settings import load_settings_or_exit
    from monitor.errors import ConfigurationError
    from simulators.whatif import current_rules, proposed_rules, read_traffic, what_if

    if fmt not in ("auto", "jsonl", "csv", "parquet", "tabformer"):
        raise typer.BadParameter(f"unknown format {fmt!r}", param_hint="--format")
    settings = load_settings_or_exit(config)
    try:
        ZoneInfo(timezone_name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise typer.BadParameter(f"unknown time zone {timezone_name!r}", param_hint="--timezone") from error
    folder = None if registry is None else (registry / "customers.csv", registry / "managers.csv")
    try:
        current = current_rules(settings)
        proposed = proposed_rules(rules, current)
        events = read_traffic(recording, fmt, timezone=timezone_name)  # type: ignore[arg-type]
        result = what_if(events, settings, current, proposed, registry=folder, max_events=batch)
    except (ConfigurationError, FileNotFoundError) as error:
        typer.echo(f"cardmon: {error}".splitlines()[0], err=True)
        raise typer.Exit(2) from None
    _print_what_if(result, recording, json_path, show)

