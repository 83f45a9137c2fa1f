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
import yaml

from monitor.alerts.model import SEVERITIES

__all__ = ["AlertPolicy", "PolicyError", "FAILURE_OUTCOMES"]

#: Outcome classes that are failures (everything but approved).
FAILURE_OUTCOMES: Final = ("technical", "terminal", "card", "customer", "fraud", "unknown")
#: Tier label used in the policy table for clients whose tier the policy does not list.
_DEFAULT_TIER: Final = "\x00default"


class PolicyError(ValueError):
    """The alert policy file is missing or invalid (the message names the entry)."""


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
        """Read a policy file.

        Raises:
            PolicyError: unreadable YAML, an unknown outcome class or severity, no tiers.
        """
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise PolicyError(f"cannot read alert policy {path}: {error}") from error
        return cls.from_mapping(data, source=str(path))

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "<policy>") -> AlertPolicy:
        """Build a policy from the YAML's mapping (see :meth:`load`)."""
        if not isinstance(data, dict) or not isinstance(data.get("tiers"), dict) or not data["tiers"]:
            raise PolicyError(f"{source}: needs a non-empty 'tiers' mapping")
        window = data.get("grouping_window_seconds", 600)
        if not isinstance(window, int) or window <= 0:
            raise PolicyError(f"{source}: grouping_window_seconds must be a positive integer")
        defaults = dict(data.get("default_severity") or {})
        for outcome in FAILURE_OUTCOMES:
            defaults.setdefault(outcome, "medium")
        rows: list[tuple[str, str, str]] = []
        tiers_spec: dict[str, Any] = dict(data["tiers"])
        tiers_spec[_DEFAULT_TIER] = data.get("default_tier") or {"alert_on": []}
        for tier, spec in tiers_spec.items():
            spec = spec or {}
            overrides = dict(defaults, **(spec.get("severity") or {}))
            for outcome in spec.get("alert_on") or []:
                if outcome not in FAILURE_OUTCOMES:
                    raise PolicyError(f"{source}: tier {tier!r} alerts on unknown outcome {outcome!r}")
                severity = overrides[outcome]
                if severity not in SEVERITIES:
                    raise PolicyError(f"{source}: severity {severity!r} for {tier}/{outcome} "
                                      f"is not one of {', '.join(SEVERITIES)}")
                rows.append((str(tier), outcome, severity))
        actions = {str(k): " ".join(str(v).split()) for k, v in (data.get("actions") or {}).items()}
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
        vip = frame.filter(pl.col("tier").is_not_null() & (pl.col("outcome") != "approved"))
        if vip.height == 0:
            return vip.with_columns(pl.lit(None, dtype=pl.String).alias("severity"))
        known = list(self.tiers)
        vip = vip.with_columns(
            pl.when(pl.col("tier").is_in(known)).then(pl.col("tier"))
            .otherwise(pl.lit(_DEFAULT_TIER)).alias("policy_tier")
        )
        return vip.join(self.table, on=["policy_tier", "outcome"], how="inner",
                        maintain_order="left").drop("policy_tier")

    def action_for(self, outcome: str) -> str:
        """The suggested action for an outcome class (empty string if none)."""
        return self.actions.get(outcome, "")
