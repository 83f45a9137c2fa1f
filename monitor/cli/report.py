"""``cardmon report``: the fast-correction report of a period, as self-contained HTML (and PDF)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from monitor.cli.settings import ConfigOption, load_settings_or_exit
from monitor.cli.store import StoreOption, open_alert_store

__all__ = ["report"]

_FORMATS = ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]


def report(
    since: Annotated[
        datetime,
        typer.Option(
            "--since",
            formats=_FORMATS,
            help="Start of the period, event time, included "
            "(a date alone: midnight in --timezone).",
        ),
    ],
    until: Annotated[
        datetime,
        typer.Option(
            "--until",
            formats=_FORMATS,
            help="End of the period, excluded (a date alone: midnight in --timezone).",
        ),
    ],
    team: Annotated[
        str | None,
        typer.Option(
            "--team",
            help="A team lead's manager ID (workspace.teams): the lead's and their team's "
            "alerts, per manager.",
        ),
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    pdf: Annotated[
        Path | None,
        typer.Option(
            "--pdf",
            help="Also write this PDF (needs WeasyPrint, the pdf extra, and the system's Pango).",
        ),
    ] = None,
    timezone: Annotated[
        str,
        typer.Option(
            "--timezone",
            help="IANA zone the days and times are shown in (and dates alone are read in).",
        ),
    ] = "UTC",
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Write the fast-correction report: VIP failures, times to act, outcomes, recovery, terminals.

    The whole bank with a line per manager, or with --team a team lead's team, a table per manager.

    No client name, card or account is in it. See docs/report.md.
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from monitor.errors import ConfigurationError
    from monitor.health.state import HealthRules
    from monitor.paths import rules_path
    from monitor.report import PdfUnavailable, gather, render_html, write_pdf

    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        typer.echo(
            f"cardmon: unknown time zone {timezone!r} (an IANA name such as Europe/Paris)", err=True
        )
        raise typer.Exit(2) from None
    start = since if since.tzinfo is not None else since.replace(tzinfo=zone)
    end = until if until.tzinfo is not None else until.replace(tzinfo=zone)
    if end <= start:
        typer.echo("cardmon: --until must be after --since", err=True)
        raise typer.Exit(2)
    settings = load_settings_or_exit(config)
    managers: tuple[str, ...] | None = None
    if team is not None:
        if team not in settings.workspace.teams:
            typer.echo(f"cardmon: no team led by {team!r} in workspace.teams", err=True)
            raise typer.Exit(2)
        managers = (team, *settings.workspace.teams[team])
    try:
        classes = HealthRules.load(
            settings.health.rules_path or rules_path("health.yaml")
        ).aggregate.classes
    except ConfigurationError as error:
        typer.echo(f"cardmon: {error}", err=True)
        raise typer.Exit(2) from None
    with open_alert_store(config, store) as alert_store:
        data = gather(
            alert_store,
            since=start,
            until=end,
            zone=timezone,
            terminal_classes=classes,
            team=team,
            manager_ids=managers,
        )
    html = render_html(data)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(html, encoding="utf-8")
    typer.echo(f"wrote {output} ({data.failures} VIP failures, {data.alerts} alerts)")
    if pdf is not None:
        try:
            write_pdf(html, pdf)
        except PdfUnavailable as error:
            typer.echo(f"cardmon: {error}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"wrote {pdf}")
