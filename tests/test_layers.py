"""The package's imports run one way: read from the source (AST), not from a running process.

Each module of ``monitor/`` belongs to a layer (:data:`LAYERS`, bottom first). A module may
import its own layer and the layers below it; an import that goes up a layer, an import
cycle between files or between folders, or an import of cardmon inside a function (which
exists to dodge a cycle) fails here with the file and line.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "monitor"

#: Bottom first. A module belongs to the first entry that is its name or a package above it.
LAYERS: tuple[tuple[str, ...], ...] = (
    # Foundations: shared vocabulary and helpers, no cardmon feature above them.
    ("monitor._version", "monitor.paths", "monitor.errors", "monitor.domain", "monitor.secrets",
     "monitor.privacy", "monitor.i18n", "monitor.signing", "monitor.dead_letter_copy", "monitor.hours", "monitor.ids", "monitor.tables", "monitor.frames", "monitor.rulebook",
     "monitor.config", "monitor.faults", "monitor.testing"),
    ("monitor.kafka", "monitor.incidents"),
    ("monitor.alerts",),
    ("monitor.pipeline",),
    ("monitor.metrics",),
    ("monitor.health",),
    ("monitor.workspace",),
    ("monitor.api", "monitor.jobs", "monitor.report"),
    ("monitor.app",),
    ("monitor.cli", "monitor"),
)

#: Modules that may import cardmon inside a function, and why.
LAZY_IMPORTERS: dict[str, str] = {
    # `cardmon --help` and `cardmon version` must answer without loading polars, Kafka
    # and the whole service: each command imports what it runs.
    "monitor.cli": "each command loads only what it runs",
    "monitor.cli.alerts": "each command loads only what it runs",
    "monitor.cli.service": "each command loads only what it runs",
    "monitor.cli.settings": "each command loads only what it runs",
    "monitor.cli.store": "each command loads only what it runs",
    "monitor.cli.terminals": "each command loads only what it runs",
    "monitor.cli.report": "each command loads only what it runs",
}


@dataclass(frozen=True)
class Import:
    """One import of cardmon: who imports what, where, and whether inside a function."""

    source: str
    target: str
    line: int
    in_function: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest module that ``name`` (a module or a name inside one) lives in."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(modules: dict[str, Path]) -> list[Import]:
    found: list[Import] = []
    for source, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"

        def visit(node: ast.AST, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                names: list[str] = []
                if isinstance(child, ast.Import):
                    names = [alias.name for alias in child.names]
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        anchor = source.split(".") if is_package else source.split(".")[:-1]
                        anchor = anchor[: len(anchor) - child.level + 1]
                        base = ".".join([*anchor, *([base] if base else [])])
                    names = [f"{base}.{alias.name}" for alias in child.names]
                for name in names:
                    target = _resolve(name, modules)
                    if target is not None and target != source:
                        found.append(Import(source, target, child.lineno, in_function))
                visit(child, inside)

        visit(tree, False)
    return found


def _layer(module: str) -> int:
    best: tuple[int, int] | None = None  # <(length of the matching prefix, layer index)>
    for index, members in enumerate(LAYERS):
        for member in members:
            if module == member or module.startswith(member + "."):
                if best is None or len(member) > best[0]:
                    best = (len(member), index)
    assert best is not None, f"{module} has no layer in tests/test_layers.py LAYERS"
    return best[1]


def _folder(module: str, modules: dict[str, Path]) -> str:
    path = modules[module]
    return str(path.parent.relative_to(ROOT))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def connect(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


MODULES = _modules()
IMPORTS = _imports(MODULES)


def test_every_module_has_a_layer() -> None:
    """Every module of ``monitor/`` is placed in a layer, so a new one cannot slip in unranked."""
    for module in MODULES:
        _layer(module)


def test_no_import_goes_up_a_layer() -> None:
    """A module imports only its own layer and the layers below it (type-only imports too)."""
    upward = [f"{MODULES[i.source].relative_to(ROOT)}:{i.line} {i.source} -> {i.target}"
              for i in IMPORTS if _layer(i.target) > _layer(i.source)]
    assert upward == []


def test_no_import_cycle_between_files() -> None:
    """No set of modules imports each other in a circle, counting imports for type checking."""
    graph: dict[str, set[str]] = defaultdict(set)
    for i in IMPORTS:
        graph[i.source].add(i.target)
    assert _cycles(graph) == []


def test_no_import_cycle_between_folders() -> None:
    """Folders depend on each other one way: no folder imports one that imports it back."""
    graph: dict[str, set[str]] = defaultdict(set)
    for i in IMPORTS:
        source, target = _folder(i.source, MODULES), _folder(i.target, MODULES)
        # A package's own __init__ importing its children is not a dependency between folders.
        if source != target and not source.startswith(target + "/") and not target.startswith(source + "/"):
            graph[source].add(target)
    assert _cycles(graph) == []


def test_no_import_inside_a_function() -> None:
    """cardmon is imported at the top of a module, except where :data:`LAZY_IMPORTERS` says why."""
    hidden = [f"{MODULES[i.source].relative_to(ROOT)}:{i.line} {i.source} -> {i.target}"
              for i in IMPORTS if i.in_function and i.source not in LAZY_IMPORTERS]
    assert hidden == []


@pytest.mark.parametrize("module", ["monitor.domain", "monitor.pipeline.decoder"])
def test_light_modules_load_no_kafka_database_or_http_code(module: str) -> None:
    """Importing the shared vocabulary or the decoder loads no Kafka, PostgreSQL, Apprise or HTTP library."""
    heavy = ["aiokafka", "psycopg", "apprise", "aiohttp", "httpx", "niquests", "aiosmtplib", "apscheduler"]
    probe = (f"import sys, {module}; "
             f"print(','.join(sorted(m for m in {heavy!r} if m in sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=ROOT).stdout.strip()
    assert loaded == ""
