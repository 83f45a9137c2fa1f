"""Regenerate the committed dashboard JSON: ``python -m dashboards.build``.

Writes one file per dashboard to ``dashboards/json/<uid>.json`` (the folder the
Grafana provisioning provider reads). ``--check`` writes nothing and exits 1 when
a committed file differs from what the source builds (for CI).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards import fleet, pipeline, vip
from dashboards._constants import JSON_DIR
from dashboards.common import render

__all__ = ["DASHBOARDS", "JSON_DIR", "main", "rendered", "stale", "write"]

#: Dashboard UID → builder, in the order Grafana lists them.
DASHBOARDS: Final[dict[str, Callable[[], Dashboard]]] = {
    fleet.UID: fleet.build,
    vip.UID: vip.build,
    pipeline.UID: pipeline.build,
}


def rendered() -> dict[str, str]:
    """Every dashboard as JSON text, by file name (``<uid>.json``).

    Returns:
        File name → JSON text (deterministic; see :func:`dashboards.common.render`).
    """
    return {f"{uid}.json": render(build()) for uid, build in DASHBOARDS.items()}


def write(directory: Path = JSON_DIR) -> list[Path]:
    """Write every dashboard's JSON into ``directory`` and remove stale ``*.json`` there.

    Args:
        directory: target folder (created if missing).

    Returns:
        The paths written, in :data:`DASHBOARDS` order.
    """
    directory.mkdir(parents=True, exist_ok=True)
    documents = rendered()
    for old in directory.glob("*.json"):
        if old.name not in documents:
            old.unlink()
    paths = []
    for name, text in documents.items():
        path = directory / name
        path.write_bytes(text.encode("utf-8"))
        paths.append(path)
    return paths


def stale(directory: Path = JSON_DIR) -> list[str]:
    """File names in ``directory`` that are missing, extra or differ from the source.

    Args:
        directory: the folder of committed JSON.

    Returns:
        Sorted file names; empty when everything is up to date.
    """
    documents = rendered()
    present = {path.name: path for path in directory.glob("*.json")} if directory.is_dir() else {}
    names = set(documents) | set(present)
    return sorted(
        name for name in names
        if name not in documents or name not in present
        or present[name].read_bytes() != documents[name].encode("utf-8")
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: arguments (``sys.argv[1:]`` by default): ``[--check] [--out DIR]``.

    Returns:
        Process exit status: 0, or 1 when ``--check`` finds stale files.
    """
    parser = argparse.ArgumentParser(prog="python -m dashboards.build", description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the committed JSON is stale")
    parser.add_argument("--out", type=Path, default=JSON_DIR, help="output folder")
    args = parser.parse_args(argv)
    if args.check:
        outdated = stale(args.out)
        for name in outdated:
            print(f"stale: {args.out / name}", file=sys.stderr)
        if outdated:
            print("run: python -m dashboards.build", file=sys.stderr)
        return 1 if outdated else 0
    for path in write(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
