"""``cardmon alerts``: the alert store from the shell: export, list, acknowledge, resolve, re-send."""

from __future__ import annotations

import sys
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer

from monitor.cli.settings import ConfigOption
from monitor.cli.store import StoreOption, open_alert_store, print_table

if TYPE_CHECKING:
    from monitor.alerts.store import AlertStore

__all__ = ["ExportFormat", "ListState", "Outcome", "app"]

app = typer.Typer(help="The alert store: export, list, acknowledge, resolve, re-send.",
                  no_args_is_help=True)

class ExportFormat(str, Enum):
    jsonl = "jsonl"

class Outcome(str, Enum):
    """What was done about an alert (``monitor.alerts.states.RESOLUTION_OUTCOMES``; a test keeps them equal)."""

    called_client = "called_client"
    reversal_or_refund_arranged = "reversal_or_refund_arranged"
    card_replaced = "card_replaced"
    terminal_reported_to_operations = "terminal_reported_to_operations"
    client_unreachable = "client_unreachable"
    no_action_needed = "no_action_needed"

class ListState(str, Enum):
    open = "open"
    notified = "notified"
    acknowledged = "acknowledged"
    resolved = "resolved"
    failed = "failed"


@app.command("export")
def alerts_export(
    config: ConfigOption = None,
    store: StoreOption = None,
    format: Annotated[ExportFormat, typer.Option("--format", help="Output format.")] = ExportFormat.jsonl,
) -> None:
    """Print every stored alert with its state, history and events, one JSON object per line."""
    from monitor.alerts.export import export_jsonl

    with open_alert_store(config, store) as alert_store:
        export_jsonl(alert_store, sys.stdout)


def _change(alert_store: AlertStore, what: str, alert_id: str, by: str, note: str | None,
            outcome: str | None = None) -> None:
    """Acknowledge or resolve through the CLI; print the outcome or exit 1 with the reason."""
    from monitor.alerts.states import MAX_NOTE_CHARS, AlertNotFoundError, StateConflictError

    if note is not None and len(note) > MAX_NOTE_CHARS:
        typer.echo(f"a note has at most {MAX_NOTE_CHARS} characters (this one has {len(note)}); "
                   "nothing changed", err=True)
        raise typer.Exit(2)
    try:
        if what == "acknowledged":
            result = alert_store.acknowledge(alert_id, by=by, via="cli", note=note)
        else:
            result = alert_store.resolve(alert_id, by=by, via="cli", note=note, outcome=outcome)
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


@app.command("ack")
def alerts_ack(
    alert_id: Annotated[str, typer.Argument(help="The alert ID (al-...).")],
    by: Annotated[str, typer.Option("--by", help="Who acknowledges (manager ID or your name).")],
    note: Annotated[str | None, typer.Option("--note", help="Optional note.")] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Acknowledge an alert (stops its escalation); acknowledging twice changes nothing."""
    with open_alert_store(config, store) as alert_store:
        _change(alert_store, "acknowledged", alert_id, by, note)


@app.command("resolve")
def alerts_resolve(
    alert_id: Annotated[str, typer.Argument(help="The alert ID (al-...).")],
    note: Annotated[str | None, typer.Option(
        "--note", help="What was done, in words (required without --outcome).")] = None,
    outcome: Annotated[Outcome | None, typer.Option(
        "--outcome", help="What was done, from the outcome vocabulary (required without --note).")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who resolves (default: your login name).")] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Resolve an acknowledged alert with an outcome, a note or both, saying what was done."""
    import getpass

    if outcome is None and not (note and note.strip()):
        typer.echo("say what was done: --outcome, --note or both", err=True)
        raise typer.Exit(2)
    with open_alert_store(config, store) as alert_store:
        _change(alert_store, "resolved", alert_id, by or getpass.getuser(), note,
                outcome.value if outcome is not None else None)


@app.command("resend")
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
    with open_alert_store(config, store) as alert_store:
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


@app.command("list")
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
    with open_alert_store(config, store) as alert_store:
        page = alert_store.find_alerts(state=state.value if state else None,
                                       manager_id=manager, limit=limit,
                                       late=True if late else None,
                                       unroutable=True if unrouted else None)
    rows = [("ALERT", "STATE", "DELIVERY", "SEVERITY", "MANAGER", "CLIENT", "RECORDED (UTC)", "EVENTS")]
    rows += [(a.alert_id, page.states[a.alert_id], a.status, a.severity, a.manager.manager_id,
              f"{a.customer_name} ({a.customer_id})", a.created_at.strftime("%Y-%m-%d %H:%M:%S"),
              str(a.event_count)) for a in page.alerts]
    print_table(rows)
    if page.next_cursor is not None:
        typer.echo(f"(showing the newest {limit}; use --limit for more)", err=True)
