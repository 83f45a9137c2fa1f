"""``cardmon incidents``: storm-control incidents from the alert store."""

from __future__ import annotations

from typing import Annotated

import typer

from monitor.cli.settings import ConfigOption
from monitor.cli.store import StoreOption, open_alert_store, print_table

__all__ = ["app"]

app = typer.Typer(help="Storm-control incidents: outages of a terminal, merchant, region, "
                  "issuer or the network.", no_args_is_help=True)


@app.command("list")
def incidents_list(
    open_only: Annotated[bool, typer.Option("--open", help="Only incidents that have not ended.")] = False,
    top_level: Annotated[bool, typer.Option(
        "--top-level", help="Leave out incidents a broader one holds (a terminal in a network outage).")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="Most incidents to show.")] = 50,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """List incidents, latest start first: ID, scope and key, start and end (event time, UTC), scale, VIP alerts."""
    with open_alert_store(config, store) as alert_store:
        incidents = alert_store.list_incidents(open_only=open_only, top_level=top_level, limit=limit)
    rows = [("INCIDENT", "SCOPE", "KEY", "STARTED (UTC)", "ENDED (UTC)", "FAILURES", "ALERTS",
             "MANAGERS", "NOTE")]
    rows += [(i.incident_id, i.scope, i.scope_key, i.started_at.strftime("%Y-%m-%d %H:%M:%S"),
              i.ended_at.strftime("%Y-%m-%d %H:%M:%S") if i.ended_at else "open", str(i.failures),
              str(i.alert_count), str(i.manager_count),
              "; ".join(filter(None, (i.note, f"inside {i.parent_id}" if i.parent_id else None))))
             for i in incidents]
    print_table(rows)
