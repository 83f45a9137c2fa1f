"""Commands' access to the alert store: open an existing one or exit 1 with the reason; print rows.

A command never creates a store: a SQLite path that is not a cardmon store (a typo,
another application's database, an empty file) is refused, read only. A PostgreSQL
URL's password is never printed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from monitor.cli.settings import load_settings_or_exit

if TYPE_CHECKING:
    from monitor.alerts.store import AlertStore

__all__ = ["StoreOption", "not_a_store", "open_alert_store", "print_table"]

StoreOption = Annotated[str | None, typer.Option(
    help="Alert store: a SQLite file or a postgresql:// URL (default: from settings).")]

@contextmanager
def open_alert_store(config: Path | None, store: str | None) -> Iterator[AlertStore]:
    """Open an existing alert store (never create a SQLite file on a typo), or exit 1 with the reason.

    A PostgreSQL URL's password is never printed.
    """
    from monitor.alerts.store import AlertStore
    from monitor.alerts.store.db import DATABASE_ERRORS, is_transient, is_url
    from monitor.config import PostgresSettings
    from monitor.secrets import redact_secret, redact_url

    if store is not None:
        location: str | Path = store
        postgres = PostgresSettings()
    else:
        alerting = load_settings_or_exit(config).alerting
        location, postgres = alerting.store_location(), alerting.postgres
    if is_url(location):
        shown = redact_url(str(location))
    else:
        location = Path(location)
        shown = str(location)
        if not location.is_file():
            typer.echo(f"no alert store at {location}", err=True)
            raise typer.Exit(1)
        if (reason := not_a_store(location)) is not None:
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


def not_a_store(path: Path) -> str | None:
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


def print_table(rows: list[tuple[str, ...]]) -> None:
    """Print ``rows`` (the first is the header) as left-aligned columns two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
