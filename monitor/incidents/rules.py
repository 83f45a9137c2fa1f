"""The ``incidents:`` section of ``rules/alerting.yaml``: when many failures are one outage.

An *incident* is an outage of one scope — a terminal (ISO 8583 field 41), a merchant
(field 42), a region, an issuer (the card's IIN, the first six digits of the
masked PAN, ISO/IEC 7812-1), or the whole network (the bank's switch or the card
scheme: failures across the fleet; its one key is ``fleet``) — seen as many failed
transactions of the outage outcome classes at once. The VIP alerts it causes are linked to it and each
relationship manager gets one message naming the incident and their affected
clients (see :mod:`monitor.incidents.detector` and ``docs/incidents.md``).

All durations are seconds; windows are event time (``occurred_at``) except
``group_wait_seconds`` and ``group_interval_seconds``, which are wall-clock delivery
delays like Alertmanager's ``group_wait`` and ``group_interval``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from monitor.domain import OUTCOMES
from monitor.errors import ConfigurationError
from monitor.rulebook import RuleFile

__all__ = ["FLEET", "SCOPES", "IncidentRules", "IncidentRulesError", "Scope", "ScopeRule"]

Scope = Literal["network", "issuer", "region", "merchant", "terminal"]
#: Broadest first: a failure belongs to the open incident of the broadest scope that
#: holds it (an issuer outage explains the failures at each terminal it touches).
SCOPES: Final[tuple[Scope, ...]] = ("network", "issuer", "region", "merchant", "terminal")
#: The key of the ``network`` scope: the whole fleet.
FLEET: Final = "fleet"

_frozen = ConfigDict(frozen=True, extra="forbid")


class IncidentRulesError(ConfigurationError):
    """The ``incidents:`` section is invalid (the message names the field)."""


class ScopeRule(BaseModel):
    """When failures at one scope key make an incident, all over ``window_seconds``.

    Attributes:
        min_failures: failed transactions of the outage classes, at least.
        min_cards: distinct cards (``card_ref``) among them, at least — one client
            retrying ten times is not an outage.
        min_terminals: distinct terminals among them, at least (1 for a terminal).
        min_failure_ratio: failures / all transactions at the key in a bucket, at least (0–1);
            only buckets at this ratio count towards the other thresholds.
    """

    model_config = _frozen
    min_failures: int = Field(ge=1)
    min_cards: int = Field(default=1, ge=1)
    min_terminals: int = Field(default=1, ge=1)
    min_failure_ratio: float = Field(default=0.5, gt=0, le=1)


class IncidentRules(BaseModel):
    """Storm control: detection thresholds, flapping and the delivery delays.

    Attributes:
        outcome_classes: outcome classes that count as outage failures
            (``rules/response_codes.yaml``; declines of the client's own doing do not).
        window_seconds: the sliding event-time window the thresholds apply to.
        bucket_seconds: resolution of the window; also how long a scope must be
            healthy (or failing) to count as recovered (or failing again).
        resolve_after_seconds: an incident ends once its scope has had transactions
            without failing for this long after its last failing bucket.
        flapping_min_relapses: failing again after recovering this many times marks
            the incident as flapping (one incident, with a note, not one per relapse).
        group_wait_seconds: a new alert of an outage class waits this long before it
            is sent on its own, so an incident that opens meanwhile can take it in (a
            bucket is judged once closed: up to ``bucket_seconds`` plus the allowed
            lateness, settings ``event_time``, after its failures).
        group_interval_seconds: least time between two messages about one incident to
            one manager (clients affected after the first message come in an update).
        scopes: the scopes to watch and their thresholds; a scope left out is not watched.
    """

    model_config = _frozen
    outcome_classes: tuple[str, ...] = ("technical", "terminal")
    window_seconds: int = Field(default=120, ge=10)
    bucket_seconds: int = Field(default=10, ge=1)
    resolve_after_seconds: int = Field(default=300, ge=1)
    flapping_min_relapses: int = Field(default=3, ge=1)
    group_wait_seconds: float = Field(default=15.0, ge=0)
    group_interval_seconds: float = Field(default=300.0, ge=0)
    scopes: dict[Scope, ScopeRule] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _window_holds_buckets(self) -> IncidentRules:
        if self.window_seconds % self.bucket_seconds:
            raise ValueError("window_seconds must be a multiple of bucket_seconds")
        unknown = [c for c in self.outcome_classes if c not in OUTCOMES or c == "approved"]
        if unknown:  # a typo would silently turn storm control off
            raise ValueError(f"outcome_classes: {', '.join(map(repr, unknown))} is not a failure "
                             f"class (one of {', '.join(c for c in OUTCOMES if c != 'approved')})")
        return self

    @property
    def window_buckets(self) -> int:
        """Buckets in one window."""
        return self.window_seconds // self.bucket_seconds

    @property
    def ordered_scopes(self) -> tuple[Scope, ...]:
        """The watched scopes, broadest first (:data:`SCOPES` order)."""
        return tuple(scope for scope in SCOPES if scope in self.scopes)

    @classmethod
    def load(cls, path: Path) -> IncidentRules | None:
        """Read the ``incidents:`` section of an alert policy file.

        Returns:
            The rules, or ``None`` when the file has no ``incidents:`` section (storm
            control off: every alert goes out on its own).

        Raises:
            IncidentRulesError: the file cannot be read or the section is invalid.
        """
        return cls.from_rules(RuleFile.read(path, error=IncidentRulesError))

    @classmethod
    def from_rules(cls, rules: RuleFile) -> IncidentRules | None:
        """The ``incidents:`` section of the alert policy file; ``None`` when absent (storm control off).

        Raises:
            IncidentRulesError: the section is invalid (the message names the field).
        """
        return rules.validate("incidents", cls, IncidentRulesError)
