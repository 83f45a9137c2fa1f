"""The escalation chain of an alert's lifecycle: the ``escalation:`` policy and its steps.

The states and history an alert goes through are :mod:`monitor.alerts.states`.

Escalation (``escalation:`` in ``rules/alerting.yaml``): for an alert of a listed
severity that is still not acknowledged ``after_seconds`` after it was recorded,
step *n* writes an ``escalated`` history row and enqueues deliveries to the step's
recipient — the client's manager's backup (``backup_manager_id`` in the registry)
or the team lead named in the step. An acknowledged or resolved alert never
escalates. :func:`monitor.alerts.jobs.escalate_due` is one pass; call it from a
scheduler job (APScheduler ``interval``), any number of times, from any number of
instances: each step happens once per alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from monitor.domain import SEVERITIES, Manager, Severity
from monitor.errors import ConfigurationError

__all__ = [
    "EscalationPolicy",
    "EscalationRulesError",
    "EscalationStep",
    "EscalationTarget",
]

#: Escalation targets a step may name.
EscalationTarget = Literal["backup_manager", "team_lead"]
_TARGETS: Final = ("backup_manager", "team_lead")


class EscalationRulesError(ConfigurationError):
    """The ``escalation:`` section of the alert policy is invalid (the message names the entry)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EscalationStep:
    """One step of the chain.

    Attributes:
        after_seconds: seconds after the alert was recorded (wall clock) at which an
            unacknowledged alert takes this step.
        to: ``backup_manager`` (the client's manager's backup in the registry) or
            ``team_lead``.
        team_lead_id: the team lead's manager ID in the registry (``team_lead`` only).
    """

    after_seconds: int
    to: EscalationTarget
    team_lead_id: str | None = None

    def recipient_id(self, manager_id: str, managers: Mapping[str, Manager]) -> str | None:
        """The manager ID this step notifies for an alert of ``manager_id``."""
        if self.to == "team_lead":
            return self.team_lead_id
        manager = managers.get(manager_id)
        return manager.backup_manager_id if manager is not None else None


@dataclass(frozen=True, slots=True, kw_only=True)
class EscalationPolicy:
    """The ``escalation:`` section of ``rules/alerting.yaml``.

    Attributes:
        severities: the severities that escalate.
        steps: the chain, ``after_seconds`` strictly increasing.
    """

    severities: tuple[Severity, ...] = ()
    steps: tuple[EscalationStep, ...] = ()

    @classmethod
    def load(cls, path: Path) -> EscalationPolicy:
        """Read the ``escalation:`` section of an alert policy file (absent → no escalation).

        Raises:
            EscalationRulesError: unreadable YAML or an invalid section (the message names the entry).
        """
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise EscalationRulesError(f"cannot read {path}: {error}") from error
        if not isinstance(data, dict):
            raise EscalationRulesError(f"{path}: expected a mapping")
        return cls.from_mapping(data.get("escalation"), source=str(path))

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "<escalation>") -> EscalationPolicy:
        """Build the policy from the section's mapping (``None`` → no escalation).

        Raises:
            EscalationRulesError: an unknown severity or target, a missing ``team_lead_id``, a
                non-positive or non-increasing ``after_seconds``.
        """
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise EscalationRulesError(f"{source}: escalation must be a mapping with severities and steps")
        severities = data.get("severities") or []
        if not isinstance(severities, list) or any(s not in SEVERITIES for s in severities):
            raise EscalationRulesError(f"{source}: escalation.severities must list some of "
                             f"{', '.join(SEVERITIES)}")
        raw_steps = data.get("steps") or []
        if not isinstance(raw_steps, list):
            raise EscalationRulesError(f"{source}: escalation.steps must be a list")
        steps: list[EscalationStep] = []
        for number, raw in enumerate(raw_steps, start=1):
            where = f"{source}: escalation step {number}"
            if not isinstance(raw, dict):
                raise EscalationRulesError(f"{where} must be a mapping")
            after = raw.get("after_seconds")
            if not isinstance(after, int) or isinstance(after, bool) or after <= 0:
                raise EscalationRulesError(f"{where}: after_seconds must be a positive integer")
            if steps and after <= steps[-1].after_seconds:
                raise EscalationRulesError(f"{where}: after_seconds must be later than the step before")
            target = raw.get("to")
            if target not in _TARGETS:
                raise EscalationRulesError(f"{where}: 'to' must be one of {', '.join(_TARGETS)}")
            lead = raw.get("team_lead_id")
            if target == "team_lead" and not (isinstance(lead, str) and lead):
                raise EscalationRulesError(f"{where}: a team_lead step needs team_lead_id")
            steps.append(EscalationStep(after_seconds=after, to=target,
                                        team_lead_id=str(lead) if lead else None))
        return cls(severities=tuple(severities), steps=tuple(steps))
