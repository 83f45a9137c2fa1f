"""``cardmon report``: the fast-correction report of a period, as self-contained HTML (and PDF)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Final

import typer

from monitor.cli.settings import ConfigOption, load_settings_or_exit
from monitor.cli.store import StoreOption, open_alert_store

__all__ = ["MAX_PERIOD_DAYS", "report"]

#: The longest period one report covers (its cost grows with the number of days).
MAX_PERIOD_DAYS: Final = 366

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
            help="End of the period, excluded (a date alone: midnight in --timezone); "
            f"at most {MAX_PERIOD_DAYS} days after --since.",
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
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="The HTML file to write (replaced whole; never the store, nor the --pdf file).",
        ),
    ] = Path("report.html"),
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
    if end - start > timedelta(days=MAX_PERIOD_DAYS):
        typer.echo(
            f"cardmon: the period is longer than {MAX_PERIOD_DAYS} days: "
            "write a report per year at most",
            err=True,
        )
        raise typer.Exit(2)
    settings = load_settings_or_exit(config)
    store_file = _store_file(store if store is not None else settings.alerting.store_location())
    _refuse_clashing_outputs(output, pdf, store_file)
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
    _write_atomically(output, lambda path: path.write_text(html, encoding="utf-8"))
    typer.echo(f"wrote {output} ({data.failures} VIP failures, {data.alerts} alerts)")
    if pdf is not None:
        try:
            _write_atomically(pdf, lambda path: write_pdf(html, path))
        except PdfUnavailable as error:
            typer.echo(f"cardmon: {error}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"wrote {pdf}")


def _store_file(location: str | Path) -> Path | None:
    """The SQLite store's file (resolved), ``None`` for a PostgreSQL URL."""
    from monitor.alerts.store.db import is_url

    return None if is_url(location) else Path(location).resolve()


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _refuse_clashing_outputs(output: Path, pdf: Path | None, store_file: Path | None) -> None:
    """Exit 2 when an output is the store's file, a directory, or both outputs are one file."""
    for option, path in (("--output", output), ("--pdf", pdf)):
        if path is None:
            continue
        if store_file is not None and _same_file(path, store_file):
            typer.echo(f"cardmon: {option} {path} is the alert store: name another file", err=True)
            raise typer.Exit(2)
        if path.is_dir():
            typer.echo(f"cardmon: {option} {path} is a directory: name a file", err=True)
            raise typer.Exit(2)
    if pdf is not None and _same_file(output, pdf):
        typer.echo(f"cardmon: --output and --pdf are the same file ({pdf})", err=True)
        raise typer.Exit(2)


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` through a temporary file beside it, then rename: never half a file.

    Raises:
        typer.Exit: 1, with a one-line reason, when ``path`` cannot be written.
    """
    temporary: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        temporary = Path(name)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # the mode a plain open() would give
        write(temporary)
        os.replace(temporary, path)
        temporary = None
    except OSError as error:
        typer.echo(f"cardmon: cannot write {path}: {error.strerror or error}", err=True)
        raise typer.Exit(1) from None
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
