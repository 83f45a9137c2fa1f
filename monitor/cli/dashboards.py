"""``cardmon dashboards``: regenerate the Grafana dashboards' JSON, upload it to a Grafana."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["app"]

app = typer.Typer(help="Grafana dashboards: regenerate the JSON, upload it.", no_args_is_help=True)


@app.command("build")
def dashboards_build(
    check: Annotated[bool, typer.Option(
        "--check", help="Write nothing; exit 1 if dashboards/json is stale.")] = False,
) -> None:
    """Regenerate dashboards/json/*.json from the Python source (needs the 'dashboards' extra)."""
    try:
        from dashboards.build import main as build_main
    except ModuleNotFoundError as error:
        typer.echo(f"cardmon: {error.name} is missing: pip install 'cardmon[dashboards]'", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(build_main(["--check"] if check else []))


@app.command("push")
def dashboards_push(
    url: Annotated[str, typer.Option("--url", help="Grafana base URL, e.g. http://127.0.0.1:3000.")],
    folder: Annotated[str, typer.Option(
        "--folder", help="Grafana folder title (created if missing).")] = "cardmon",
) -> None:
    """Upload the dashboards into a Grafana folder, overwriting by UID.

    The token comes from $GRAFANA_TOKEN (or $GRAFANA_API_KEY), never from the command line.
    """
    from dashboards.push import PushError, push, token_from_env

    token = token_from_env()
    if token is None and "@" not in url:
        typer.echo("cardmon: set GRAFANA_TOKEN (or GRAFANA_API_KEY) to a Grafana "
                   "service-account token", err=True)
        raise typer.Exit(2)
    try:
        result = push(url, token, folder=folder)
    except PushError as error:
        typer.echo(f"cardmon: {error}", err=True)
        raise typer.Exit(1) from None
    state = "created" if result.folder_created else "existing"
    typer.echo(f"{len(result.dashboards)} dashboards in {state} folder {folder!r} "
               f"(uid {result.folder_uid}):")
    for uid, path in result.dashboards.items():
        typer.echo(f"  {uid}  {url.rstrip('/')}{path}")
