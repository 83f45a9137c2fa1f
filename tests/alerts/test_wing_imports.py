"""The alerts wing's own import rules, read from the source: public names across files, a store that only persists."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WING = ROOT / "monitor" / "alerts"


def _imports(path: Path) -> list[tuple[str, str, int]]:
    """``(module, name, line)`` of each ``from monitor... import name`` in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [(node.module or "", alias.name, node.lineno)
            for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and (node.module or "").startswith("monitor") for alias in node.names]


def test_no_private_name_is_imported_from_another_module() -> None:
    """No module of the wing imports an underscore name of another: what files share is public."""
    private = [f"{path.relative_to(ROOT)}:{line} {module}.{name}"
               for path in sorted(WING.rglob("*.py"))
               for module, name, line in _imports(path)
               if name.startswith("_")]
    assert private == []


def test_the_store_imports_no_renderer_job_or_delivery() -> None:
    """The store persists: it never imports the messages, the jobs or the delivery that build on it."""
    above = ("monitor.alerts.messages", "monitor.alerts.delivery", "monitor.alerts.jobs",
             "monitor.alerts.export")
    found = [f"{path.relative_to(ROOT)}:{line} {module}"
             for path in sorted((WING / "store").rglob("*.py"))
             for module, _, line in _imports(path)
             if module.startswith(above)]
    assert found == []


def test_renderers_import_no_delivery() -> None:
    """Messages name the acknowledgement links by their shape (AckLinkMaker), never the delivery package."""
    found = [f"{path.relative_to(ROOT)}:{line} {module}"
             for path in sorted((WING / "messages").rglob("*.py"))
             for module, _, line in _imports(path)
             if module.startswith("monitor.alerts.delivery")]
    assert found == []
