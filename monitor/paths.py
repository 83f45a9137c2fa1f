"""Where the project's data files live, in a checkout and in an installed wheel.

In a checkout the data sits beside the package (``rules/``, ``schemas/``); the
wheel force-includes them as ``monitor/_rules/`` and ``monitor/_schemas/``
(see ``[tool.hatch.build.targets.wheel.force-include]`` in ``pyproject.toml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["rules_path", "schema_path"]

_PACKAGE: Final = Path(__file__).resolve().parent
_REPO: Final = _PACKAGE.parent


def _find(folder: str, installed: str, name: str) -> Path:
    candidates = (_REPO / folder / name, _PACKAGE / installed / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = " and ".join(str(candidate) for candidate in candidates)
    raise FileNotFoundError(f"{folder}/{name} not found (looked in {looked})")


def rules_path(name: str) -> Path:
    """Return the path of a file in ``rules/`` (``monitor/_rules/`` when installed).

    Args:
        name: file name inside ``rules/``, e.g. ``"response_codes.yaml"``.

    Returns:
        The checkout's copy if present, else the installed copy.

    Raises:
        FileNotFoundError: neither copy exists; the message names both paths.
    """
    return _find("rules", "_rules", name)


def schema_path(name: str) -> Path:
    """Return the path of a file in ``schemas/`` (``monitor/_schemas/`` when installed).

    Args:
        name: file name inside ``schemas/``, e.g. ``"transaction-event.v1.json"``.

    Returns:
        The checkout's copy if present, else the installed copy.

    Raises:
        FileNotFoundError: neither copy exists; the message names both paths.
    """
    return _find("schemas", "_schemas", name)
