"""How a command gets its settings: the ``--config`` option, and bad settings as one line, exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer

if TYPE_CHECKING:
    import pydantic

    from monitor.config import Settings

__all__ = ["ConfigOption", "load_settings_or_exit", "settings_errors"]

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings file (default: $CARDMON_CONFIG or ./cardmon.yaml)."),
]


def load_settings_or_exit(config: Path | None) -> Settings:
    """Load the settings, or exit 2 with a one-line reason (no traceback) when they are bad."""
    import pydantic

    from monitor.config import load_settings

    try:
        return load_settings(config)
    except FileNotFoundError as error:
        typer.echo(f"cardmon: {error}", err=True)
        raise typer.Exit(2) from None
    except pydantic.ValidationError as error:
        typer.echo(f"cardmon: invalid settings: {settings_errors(error)}", err=True)
        raise typer.Exit(2) from None


# Settings whose values are never quoted back (they may hold a password or a token).
_SECRET_PARTS: Final = ("password", "secret", "token", "url", "apprise")


def settings_errors(error: pydantic.ValidationError) -> str:
    """Each problem as ``place: message (got value)``; a value is quoted only when harmless.

    A value is shown when it is a short scalar of a field whose name does not suggest a
    secret; a model-level error (whose input is the whole section) never shows one.
    """
    lines = []
    for problem in error.errors():
        place = ".".join(str(part) for part in problem["loc"]) or "settings"
        given = problem.get("input")
        names = " ".join(str(part).lower() for part in problem["loc"])
        shown = (isinstance(given, (str, int, float)) and len(str(given)) <= 80
                 and not any(part in names for part in _SECRET_PARTS))
        lines.append(f"{place}: {problem['msg']}" + (f" (got {given!r})" if shown else ""))
    return "; ".join(lines)
