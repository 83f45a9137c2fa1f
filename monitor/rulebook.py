"""Reading one section of a rule file (``rules/alerting.yaml``) into a pydantic model.

Storm control (``incidents:``) and the rate cap (``rate_limit:``) are sections of the
alert policy file, each validated by its own frozen pydantic model; this is the one
place that reads a section and turns a validation error into one line naming the
field (``incidents.scopes.network.min_failures: ...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["read_section"]

M = TypeVar("M", bound=BaseModel)


def read_section(path: Path, name: str, model: type[M], error: type[ValueError]) -> M | None:
    """Validate section ``name`` of the YAML file at ``path`` with ``model``.

    Args:
        path: the rule file.
        name: the top-level key of the section.
        model: the pydantic model of the section.
        error: the exception to raise (its message names the file and the field).

    Returns:
        The section, or ``None`` when the file has no such key (the feature is off).

    Raises:
        error: the file cannot be read, is not YAML, or the section is invalid.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as problem:
        raise error(f"cannot read {path}: {problem}") from problem
    section = data.get(name) if isinstance(data, dict) else None
    if section is None:
        return None
    try:
        return model.model_validate(section)
    except ValidationError as problem:
        first = problem.errors()[0]
        where = ".".join([name, *(str(part) for part in first["loc"])])
        raise error(f"{path}: {where}: {first['msg']}") from None
