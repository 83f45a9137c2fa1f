"""Rule files (``rules/*.yaml``), each read once and strictly, then handed to its concerns.

A rule file holds sections that belong to different concerns: ``rules/alerting.yaml``
has the alert policy (``tiers``...), ``escalation:``, ``incidents:`` and
``rate_limit:``; ``rules/health.yaml`` has ``silent:``, ``windows:``, ``state:`` and
``aggregate:``. The process reads each file once at start (:meth:`RuleFile.read`)
and hands the one :class:`RuleFile` to every concern, which validates its own
section (``AlertPolicy.from_rules(rules)``, ``IncidentRules.from_rules(rules)``...);
a section with a pydantic model goes through :meth:`RuleFile.validate`, which names
the bad field in one line (``incidents.scopes.network.min_failures: ...``).

Strict means: a mapping key written twice anywhere in the file is refused with one
line naming the file, the line and the key (``rules/alerting.yaml: line 12:
duplicate key 'tiers' (first on line 3)``), where YAML itself would silently keep
the last one. Rule files are not reloaded while the process runs; restart to apply
a change.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from monitor.errors import ConfigurationError

__all__ = ["RuleFile", "RuleFileError"]

M = TypeVar("M", bound=BaseModel)

_MERGE_TAG = "tag:yaml.org,2002:merge"


class RuleFileError(ConfigurationError):
    """A rule file cannot be read or is not strict YAML.

    Attributes:
        path: the file.
        problem: one line saying what is wrong, e.g. ``"line 12: duplicate key 'tiers'
            (first on line 3)"`` or the operating system's reason.
    """

    def __init__(self, message: str, *, path: Path, problem: str) -> None:
        super().__init__(message)
        self.path = path
        self.problem = problem


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a mapping key written twice instead of keeping the last."""


def _unique_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    first_line: dict[Any, int] = {}  # <key: 1-based line of its first occurrence>
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:  # ``<<: *anchor``: merged keys may be overridden
            continue
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            continue  # construct_mapping reports an unhashable key itself
        line = key_node.start_mark.line + 1
        if key in first_line:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {first_line[key]})",
                key_node.start_mark)
        first_line[key] = line
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def _one_line(error: yaml.YAMLError) -> str:
    """``"line 12, column 3: <problem>"`` for a YAML error with a position, else its text on one line."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        problem = error.problem or error.context or "invalid YAML"
        if problem.startswith("duplicate key"):
            return f"line {mark.line + 1}: {problem}"
        context = f" ({error.context})" if error.context and error.problem else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}{context}"
    return " ".join(str(error).split())


@dataclass(frozen=True, slots=True)
class RuleFile:
    """One rule file as read: its path and its parsed document.

    Attributes:
        path: the file (error messages name it).
        document: the parsed YAML: normally a mapping of section name to section;
            ``None`` for an empty file; whatever the file holds otherwise (each
            concern says what it needs).
    """

    path: Path
    document: Any

    @classmethod
    def read(cls, path: Path | str, *, error: type[Exception] = RuleFileError,
             what: str = "") -> RuleFile:
        """Read and parse ``path`` strictly (duplicate keys refused).

        Args:
            path: the YAML file.
            error: the exception type to raise; :class:`RuleFileError` (the default)
                carries ``path`` and ``problem``; another type (the concern's own, e.g.
                ``PolicyError``) gets the message only, with the :class:`RuleFileError`
                as its cause.
            what: how the message names the file, e.g. ``"alert policy"``.

        Returns:
            The file.

        Raises:
            error: the file cannot be read, is not YAML, or repeats a key; the one-line
                message is ``cannot read [what] <path>: <problem>``, the problem naming
                the line and the key.
        """
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
            document = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
        except OSError as problem:
            raised = _error(file, what, str(problem), problem)
        except yaml.YAMLError as problem:
            raised = _error(file, what, _one_line(problem), problem)
        else:
            return cls(file, document)
        if error is RuleFileError:
            raise raised from raised.__cause__
        raise error(str(raised)) from raised

    def section(self, name: str) -> Any:
        """The top-level section ``name``, or ``None`` when the file has none (or is no mapping)."""
        return self.document.get(name) if isinstance(self.document, dict) else None

    def validate(self, name: str, model: type[M], error: type[Exception]) -> M | None:
        """Validate section ``name`` with its concern's pydantic ``model``.

        Args:
            name: the top-level key of the section.
            model: the section's frozen pydantic model.
            error: the exception to raise (the concern's own).

        Returns:
            The section, or ``None`` when the file has no such key (the feature is off).

        Raises:
            error: the section is invalid; the one-line message names the file and the
                field (``<path>: incidents.scopes.network.min_failures: <reason>``).
        """
        section = self.section(name)
        if section is None:
            return None
        try:
            return model.model_validate(section)
        except ValidationError as problem:
            first = problem.errors()[0]
            where = ".".join([name, *(str(part) for part in first["loc"])])
            raise error(f"{self.path}: {where}: {first['msg']}") from None


def _error(path: Path, what: str, problem: str, cause: Exception) -> RuleFileError:
    named = f"{what} {path}" if what else str(path)
    error = RuleFileError(f"cannot read {named}: {problem}", path=path, problem=problem)
    error.__cause__ = cause
    return error
