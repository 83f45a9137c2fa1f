#!/usr/bin/env python3
"""Quickstart runner that needs only Python 3.11+: sets up ``.venv`` and runs a task.

    python3 tasks.py demo [cardmon demo options]   # the monitor on an embedded broker
    python3 tasks.py test [pytest options]         # the whole test suite

The virtualenv is (re)installed when ``pyproject.toml`` changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("CARDMON_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".cardmon-installed"


def ensure_venv() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"cardmon needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.is_file() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"creating virtualenv {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    print("installing cardmon and its test dependencies (first run only)", flush=True)
    subprocess.run([*pip, "install", "-U", "pip"], check=True)
    subprocess.run([*pip, "install", "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(wanted)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "cardmon"}:
        print(__doc__)
        return 2
    ensure_venv()
    task, rest = argv[0], argv[1:]
    if task == "test":
        command = [str(BIN / "python"), "-m", "pytest", *rest]
    elif task == "demo":
        command = [str(BIN / "cardmon"), "demo", *rest]
    else:
        command = [str(BIN / "cardmon"), *rest]
    os.chdir(ROOT)
    with subprocess.Popen(command) as child:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                # Ctrl-C reached the child too (same process group): it stops itself
                # cleanly (the demo stops its broker); killing it here would leave that undone.
                continue


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
