"""``cardmon workspace``: the managers' workspace from the shell: revoke sessions, purge expired sign-ins."""

from __future__ import annotations

from typing import Annotated

import typer

from monitor.cli.settings import ConfigOption
from monitor.cli.store import StoreOption, open_alert_store

__all__ = ["app"]

app = typer.Typer(help="The managers' workspace: revoke sessions, purge expired sign-ins.",
                  no_args_is_help=True)


@app.command("revoke")
def workspace_revoke(
    manager_id: Annotated[str, typer.Argument(help="The manager (or operations person) ID, e.g. RM-017.")],
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Sign a person out everywhere: revoke every live workspace session of theirs.

    Use it when a phone is lost or a person leaves; their next page asks for a new
    sign-in link (take them out of the registry too, or they can ask for one).
    """
    from datetime import UTC, datetime

    with open_alert_store(config, store) as alert_store:
        revoked = alert_store.revoke_manager_sessions(manager_id, now=datetime.now(UTC))
    typer.echo(f"revoked {revoked} session(s) of {manager_id}")


@app.command("purge")
def workspace_purge(config: ConfigOption = None, store: StoreOption = None) -> None:
    """Delete used sign-in links and sessions past their expiry now (the monitor does it hourly)."""
    from datetime import UTC, datetime

    with open_alert_store(config, store) as alert_store:
        purged = alert_store.purge_expired_sign_ins(now=datetime.now(UTC))
    typer.echo(f"purged {purged} expired sign-in link(s) and session(s)")
