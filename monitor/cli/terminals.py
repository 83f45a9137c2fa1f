"""``cardmon terminals``: repair priority from the alert store: the terminals that hurt VIP clients most."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import typer

from monitor.cli.settings import ConfigOption, load_settings_or_exit
from monitor.cli.store import StoreOption, open_alert_store, print_table

__all__ = ["Window", "app"]

app = typer.Typer(help="Terminals: which ones hurt the bank's VIP clients most (repair priority).",
                  no_args_is_help=True)


class Window(str, Enum):
    """The ranking's periods (the same as the repair-priority gauges')."""

    day = "24h"
    week = "7d"


@app.command("impact")
def terminals_impact(
    window: Annotated[list[Window] | None, typer.Option(
        "--window", help="Period ending at --until; repeat for several (default: 24h and 7d).")] = None,
    top: Annotated[int, typer.Option("--top", min=1, max=500, help="Terminals per period.")] = 20,
    until: Annotated[datetime | None, typer.Option(
        "--until", formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d"],
        help="End of the periods, event time (default: now; a date alone is midnight UTC).")] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Rank terminals by VIP impact: distinct VIP clients who failed there, then failures, then managers.

    Counts the terminal's own failure classes only (rules/health.yaml aggregate.classes:
    by default technical, terminal, card) and leaves out the failures of issuer or
    network outages (storm-control incidents of those scopes).
    """
    from datetime import UTC

    from monitor.errors import ConfigurationError
    from monitor.health.state import HealthRules
    from monitor.metrics import IMPACT_WINDOWS
    from monitor.paths import rules_path

    settings = load_settings_or_exit(config)
    try:
        classes = HealthRules.load(settings.health.rules_path or rules_path("health.yaml")).aggregate.classes
    except ConfigurationError as error:
        typer.echo(f"cardmon: {error}", err=True)
        raise typer.Exit(2) from None
    if until is None:
        end = datetime.now(UTC)
    else:
        end = until if until.tzinfo is not None else until.replace(tzinfo=UTC)
    windows = window or [Window.day, Window.week]
    with open_alert_store(config, store) as alert_store:
        ranked = {w: alert_store.terminal_impact(since=end - IMPACT_WINDOWS[w.value], until=end,
                                                 classes=classes, limit=top) for w in windows}
    for number, w in enumerate(windows):
        if number:
            typer.echo("")
        typer.echo(f"VIP impact, {w.value} until {end.strftime('%Y-%m-%d %H:%M')} UTC "
                   f"(classes: {', '.join(classes)})")
        if not ranked[w]:
            typer.echo("no VIP failures of these classes in the period")
            continue
        rows = [("RANK", "TERMINAL", "CHANNEL", "MERCHANT", "CLIENTS", "FAILURES", "MANAGERS",
                 "CLASSES", "LAST FAILURE (UTC)")]
        rows += [(str(rank), t.terminal_id, t.channel, t.merchant_id or "-", str(t.clients),
                  str(t.failures), str(t.managers), ", ".join(f"{c} {n}" for c, n in t.outcomes),
                  t.last_failure_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"))
                 for rank, t in enumerate(ranked[w], start=1)]
        print_table(rows)
