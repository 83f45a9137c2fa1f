"""Which rule files a what-if run uses, and the settings of its offline monitor.

The current policy is what the settings name (``alerting.policy_path``,
``alerting.response_codes_path``, ``health.rules_path``; each defaults to the file of
``rules/``). The proposed policy is a folder laid out like ``rules/``: each of
:data:`RULE_FILES` it holds replaces the current one, each it lacks falls back to it
(a proposal that only edits ``alerting.yaml`` is a folder with that one file).

:func:`run_settings` turns the operator's settings into those of one offline run: the
rule files given, a throwaway SQLite store, no sink, no API or workspace, no
scale-out, and nothing *late* (``stale_after_seconds`` off: the recording is old
traffic on purpose).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from monitor.config import Settings
from monitor.errors import ConfigurationError
from monitor.paths import rules_path

__all__ = ["RULE_FILES", "RuleFiles", "current_rules", "proposed_rules", "run_settings"]

#: The files of ``rules/`` a policy is made of (the others are not read by the monitor's processing).
RULE_FILES: Final = ("alerting.yaml", "response_codes.yaml", "health.yaml")


@dataclass(frozen=True, slots=True)
class RuleFiles:
    """The rule files of one policy.

    Attributes:
        alerting: the alert policy (``alerting.yaml``: tiers, severities, grouping
            window, incidents, rate cap, escalation).
        response_codes: the response-code table (``response_codes.yaml``).
        health: terminal health (``health.yaml``).
    """

    alerting: Path
    response_codes: Path
    health: Path

    def by_name(self) -> dict[str, Path]:
        """The files by their name in ``rules/`` (the keys of :data:`RULE_FILES`)."""
        return {"alerting.yaml": self.alerting, "response_codes.yaml": self.response_codes,
                "health.yaml": self.health}


def current_rules(settings: Settings) -> RuleFiles:
    """The rule files the settings name (``rules/`` for those they leave unset).

    Raises:
        FileNotFoundError: a default file is in neither ``rules/`` nor the installed package.
    """
    return RuleFiles(
        alerting=settings.alerting.policy_path or rules_path("alerting.yaml"),
        response_codes=settings.alerting.response_codes_path or rules_path("response_codes.yaml"),
        health=settings.health.rules_path or rules_path("health.yaml"),
    )


def proposed_rules(directory: Path, current: RuleFiles) -> RuleFiles:
    """The proposed policy: ``directory``'s files, the current ones where it has none.

    Args:
        directory: a folder laid out like ``rules/``.
        current: the current policy (:func:`current_rules`).

    Raises:
        ConfigurationError: ``directory`` is not a folder, or holds none of :data:`RULE_FILES`.
    """
    if not directory.is_dir():
        raise ConfigurationError(f"{directory}: not a folder of rule files")
    found = {name: directory / name for name in RULE_FILES if (directory / name).is_file()}
    if not found:
        raise ConfigurationError(f"{directory}: holds none of {', '.join(RULE_FILES)}")
    chosen = {**current.by_name(), **found}
    return RuleFiles(alerting=chosen["alerting.yaml"], response_codes=chosen["response_codes.yaml"],
                     health=chosen["health.yaml"])


def run_settings(settings: Settings, rules: RuleFiles, store_path: Path, *,
                 registry: tuple[Path, Path] | None = None) -> Settings:
    """The settings of one offline run (see the module docstring).

    Args:
        settings: the operator's settings.
        rules: the policy of the run.
        store_path: the throwaway SQLite store (a new file).
        registry: ``(customers, managers)`` replacing the settings' VIP registry, or ``None``.

    Returns:
        A copy of ``settings`` (not validated again: only paths and switches change).
    """
    alerting = settings.alerting.model_copy(update={
        "store_path": store_path, "store_url": None, "sinks": (), "stale_after_seconds": None,
        "policy_path": rules.alerting, "response_codes_path": rules.response_codes,
        "scale_out": settings.alerting.scale_out.model_copy(update={"enabled": False}),
    })
    update = {
        "alerting": alerting,
        "health": settings.health.model_copy(update={"rules_path": rules.health}),
        "api": settings.api.model_copy(update={"enabled": False}),
        "workspace": settings.workspace.model_copy(update={"enabled": False}),
    }
    if registry is not None:
        update["registry"] = settings.registry.model_copy(
            update={"customers_path": registry[0], "managers_path": registry[1]})
    return settings.model_copy(update=update)
