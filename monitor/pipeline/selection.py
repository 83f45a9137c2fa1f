"""The alert policy (``rules/alerting.yaml``): which VIP failures alert, at which severity.

A policy is a small table ``(tier, outcome) → severity`` that the pipeline joins
with a batch's VIP failures in one vectorised step, plus the grouping window and
the suggested action per outcome class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import polars as pl

from monitor.domain import SEVERITIES
from monitor.errors import ConfigurationError
from monitor.frames import collect
from monitor.i18n import RuleTexts, remember_rule_text
from monitor.rulebook import RuleFile

__all__ = ["FAILURE_OUTCOMES", "AlertPolicy", "PolicyError", "read_policy_file"]

#: Outcome classes that are failures (everything but approved).
FAILURE_OUTCOMES: Final = ("technical", "terminal", "card", "customer", "fraud", "unknown")
#: Tier label used in the policy table for clients whose tier the policy does not list.
_DEFAULT_TIER: Final = "\x00default"
# The rows the policy may alert on: a VIP client's (tier set) transaction that failed.
_VIP_FAILURE: Final = pl.col("tier").is_not_null() & (pl.col("outcome") != "approved")


class PolicyError(ConfigurationError):
    """The alert policy file is missing or invalid (the message names the entry)."""


def read_policy_file(path: Path) -> RuleFile:
    """Read ``rules/alerting.yaml`` (or the operator's copy) once, strictly.

    Every concern with a section in it (policy, escalation, incidents, rate limit)
    is built from the one :class:`~monitor.rulebook.RuleFile` this returns.

    Raises:
        PolicyError: the file cannot be read or is not strict YAML (one line naming
            the file, and the line and key of a duplicate).
    """
    return RuleFile.read(path, error=PolicyError, what="alert policy")


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """The loaded alert policy.

    Attributes:
        grouping_window_seconds: length of the tumbling event-time window (seconds).
        table: ``tier, outcome, severity`` rows that alert (``tier`` may be the
            internal default-tier marker).
        tiers: tier names, top tier first.
        actions: suggested action per outcome class.
    """

    grouping_window_seconds: int
    table: pl.DataFrame
    tiers: tuple[str, ...]
    actions: dict[str, str]

    @classmethod
    def load(cls, path: Path) -> AlertPolicy:
        """Read a policy file (:meth:`monitor.rulebook.RuleFile.read`, strict) and build the policy.

        Raises:
            PolicyError: unreadable or not strict YAML (a key written twice), or see
                :meth:`from_rules`.
        """
        return cls.from_rules(read_policy_file(path))

    @classmethod
    def from_rules(cls, rules: RuleFile) -> AlertPolicy:
        """Build the policy from the alert policy file, read once at start.

        Raises:
            PolicyError: no tiers, a tier that is not a mapping, an unknown outcome class
                or severity (in alert_on or a severity mapping).
        """
        return cls.from_mapping(rules.document, source=str(rules.path))

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "<policy>") -> AlertPolicy:
        """Build a policy from the YAML's mapping (see :meth:`load`)."""
        if not isinstance(data, dict) or not isinstance(data.get("tiers"), dict) or not data["tiers"]:
            raise PolicyError(f"{source}: needs a non-empty 'tiers' mapping")
        window = data.get("grouping_window_seconds", 600)
        if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
            raise PolicyError(f"{source}: grouping_window_seconds must be a positive integer")
        defaults = _severities(data.get("default_severity"), source, "default_severity")
        for outcome in FAILURE_OUTCOMES:
            defaults.setdefault(outcome, "medium")
        rows: list[tuple[str, str, str]] = []
        tiers_spec: dict[str, Any] = dict(data["tiers"])
        tiers_spec[_DEFAULT_TIER] = data.get("default_tier") or {"alert_on": []}
        for tier, spec in tiers_spec.items():
            name = "default_tier" if tier == _DEFAULT_TIER else f"tier {tier!r}"
            spec = spec or {}
            if not isinstance(spec, dict):
                raise PolicyError(f"{source}: {name} must be a mapping with 'alert_on'")
            alert_on = spec.get("alert_on") or []
            if not isinstance(alert_on, list):
                raise PolicyError(f"{source}: {name} 'alert_on' must be a list of outcome classes")
            overrides = dict(defaults, **_severities(spec.get("severity"), source, f"{name} severity"))
            for outcome in alert_on:
                if outcome not in FAILURE_OUTCOMES:
                    raise PolicyError(f"{source}: {name} alerts on unknown outcome {outcome!r}")
                rows.append((str(tier), outcome, overrides[outcome]))
        actions = {str(k): " ".join(str(v).split()) for k, v in (data.get("actions") or {}).items()}
        _remember_action_translations(data.get("action_translations"), actions, source)
        table = pl.DataFrame(rows, schema={"policy_tier": pl.String, "outcome": pl.String,
                                           "severity": pl.String}, orient="row")
        return cls(window, table, tuple(str(t) for t in data["tiers"]), actions)

    def select(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Keep the rows of ``frame`` that must alert and add their ``severity``.

        Args:
            frame: events with ``tier`` (null for non-VIP) and ``outcome`` columns.

        Returns:
            Only VIP failures whose tier and outcome class alert, with ``severity``.
        """
        return collect(self.select_plan(frame.lazy()))

    def select_plan(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """The plan of :meth:`select` (to collect with other plans of the batch in one polars call).

        Args:
            frame: events with ``tier`` (null for non-VIP) and ``outcome`` columns.

        Returns:
            The plan of the VIP failures whose tier and outcome class alert, with
            ``severity`` (String) after ``frame``'s columns.
        """
        return (frame.filter(_VIP_FAILURE)
                .with_columns(pl.when(pl.col("tier").is_in(list(self.tiers))).then(pl.col("tier"))
                              .otherwise(pl.lit(_DEFAULT_TIER)).alias("policy_tier"))
                .join(self.table.lazy(), on=["policy_tier", "outcome"], how="inner",
                      maintain_order="left")
                .drop("policy_tier"))

    def action_for(self, outcome: str) -> str:
        """The suggested action for an outcome class (empty string if none)."""
        return self.actions.get(outcome, "")


def _remember_action_translations(value: Any, actions: dict[str, str], source: str) -> None:
    """Check ``action_translations`` (outcome → ``{fr: ..., zh-Hans: ...}``, every language)
    and hand each to :func:`monitor.i18n.remember_rule_text`.

    Raises:
        PolicyError: not a mapping, an outcome without an action, or a language missing.
    """
    if value is None:
        return
    if not isinstance(value, dict):
        raise PolicyError(f"{source}: action_translations must map outcome classes to translations")
    for outcome, texts in value.items():
        if str(outcome) not in actions:
            raise PolicyError(f"{source}: action_translations.{outcome}: no action of that outcome "
                              "in 'actions'")
        try:
            translated = RuleTexts.model_validate(texts).by_language()
        except ValueError as error:
            problem = " ".join(str(error).splitlines()[1:3])
            raise PolicyError(f"{source}: action_translations.{outcome}: {problem}") from None
        if not all(isinstance(text, str) for text in translated.values()):
            raise PolicyError(f"{source}: action_translations.{outcome}: each language is one text")
        remember_rule_text(actions[str(outcome)], {k: str(v) for k, v in translated.items()})


def _severities(value: Any, source: str, where: str) -> dict[str, str]:
    """Check an ``outcome → severity`` mapping (``None`` is empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PolicyError(f"{source}: {where} must be a mapping of outcome class to severity")
    for outcome, severity in value.items():
        if outcome not in FAILURE_OUTCOMES:
            raise PolicyError(f"{source}: {where} names unknown outcome {outcome!r}")
        if severity not in SEVERITIES:
            raise PolicyError(f"{source}: severity {severity!r} for {outcome} in {where} "
                              f"is not one of {', '.join(SEVERITIES)}")
    return {str(k): str(v) for k, v in value.items()}
