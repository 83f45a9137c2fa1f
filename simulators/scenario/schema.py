"""The schema of a scenario file (``simulators/scenarios/*.yaml``), validated on load.

Pydantic models, frozen and closed (``extra="forbid"``): a misspelt key is an
error naming the key and its place in the file, not a silently ignored setting.
Cross-references are checked too: every visit and fault names a declared
terminal, every VIP a declared manager, every expectation a declared client.

Offsets (``*_s``) are seconds of event time after the scenario's ``start``.
Money is integer minor units with an ISO 4217 currency. The ``faults`` are the
simulators' own (:mod:`simulators.faults`), named by their ``kind``.

The library of scenarios shipped with cardmon is :data:`SCENARIOS_DIR`
(``simulators/scenarios/``): :func:`list_scenarios` names them and
:func:`resolve_scenario` loads one by name or any file by path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from monitor.domain import OUTCOMES, Manager
from monitor.errors import ConfigurationError
from monitor.rulebook import RuleFile
from simulators.faults import Fault, ResponseCode
from simulators.traffic import NORMAL_DECLINES

__all__ = [
    "SCENARIOS_DIR",
    "AlertExpectations",
    "CardSpec",
    "ClientExpectation",
    "Expectations",
    "FleetSpec",
    "FollowUpExpectation",
    "HealthExpectation",
    "MetricExpectation",
    "Range",
    "RecoveryExpectation",
    "Scenario",
    "ScenarioError",
    "TerminalExpectation",
    "TerminalSpec",
    "Traffic",
    "VipSpec",
    "Visit",
    "list_scenarios",
    "load_scenario",
    "resolve_scenario",
]

#: The scenario library shipped with cardmon.
SCENARIOS_DIR: Final = Path(__file__).resolve().parents[1] / "scenarios"

_closed = ConfigDict(frozen=True, extra="forbid")
_Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]  # ISO 4217
Outcome = Literal["approved", "technical", "terminal", "card", "customer", "fraud", "unknown"]
assert set(OUTCOMES) == set(Outcome.__args__)  # type: ignore[attr-defined]


class ScenarioError(ConfigurationError):
    """A scenario file is missing, unreadable or breaks the schema (the message says where)."""


class Range(BaseModel):
    """An expected number: ``3`` (exactly) or ``{min: 1, max: 5}`` (either bound optional)."""

    model_config = _closed
    min: float | None = None
    max: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _exact(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"min": value, "max": value}
        return value

    def contains(self, value: float) -> bool:
        """Whether ``value`` is within the bounds (inclusive)."""
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        if self.min is not None and self.min == self.max:
            return f"{self.min:g}"
        low = "" if self.min is None else f">= {self.min:g}"
        high = "" if self.max is None else f"<= {self.max:g}"
        return " and ".join(part for part in (low, high) if part) or "any"


class TerminalSpec(BaseModel):
    """A terminal of the scenario's fleet (ISO 8583 field 41 ``terminal_id``)."""

    model_config = _closed
    terminal_id: str = Field(pattern=r"^[\x21-\x7e]{1,16}$")
    channel: Literal["ATM", "POS"]
    city: str
    region: str
    currency: _Currency = "EUR"  # the currency it dispenses or sells in
    branch_id: str | None = None
    merchant_id: str | None = None
    timezone: str = "UTC"  # IANA zone of opening_hours
    opening_hours: str = "24/7"  # grammar of monitor.health.terminals
    #: False for a terminal that only sees scripted visits (a foreign ATM).
    background: bool = True


class FleetSpec(BaseModel):
    """The file's ``fleet`` section: its terminals (the registry a monitor reads)."""

    model_config = _closed
    terminals: tuple[TerminalSpec, ...] = Field(min_length=1)


class CardSpec(BaseModel):
    """A VIP's card as events show it: a token and a PCI DSS masked PAN."""

    model_config = _closed
    card_ref: str
    pan_masked: str = Field(pattern=r"^[0-9]{6}\*{6}[0-9]{4}$")


class VipSpec(BaseModel):
    """A VIP client: tier, relationship manager, cards."""

    model_config = _closed
    customer_id: str
    name: str
    tier: str
    manager_id: str
    cards: tuple[CardSpec, ...] = Field(min_length=1)


class Traffic(BaseModel):
    """Background traffic of ordinary clients (never VIPs)."""

    model_config = _closed
    duration_s: float = Field(gt=0)
    rate: float = Field(gt=0)  # events per second of event time, across the fleet
    customers: int = Field(default=500, ge=1)
    #: Normal declines: response code -> probability (the rest is 00).
    declines: dict[ResponseCode, float] = dict(NORMAL_DECLINES)


class Visit(BaseModel):
    """A scripted transaction of a VIP client at ``at_s``.

    Approved (``00``) unless a fault hits it or ``response_code`` (the issuer's own
    answer, e.g. a fraud rule) is given; normal random declines never apply to visits.
    """

    model_config = _closed
    at_s: float = Field(ge=0)
    customer_id: str
    terminal_id: str
    card: int = Field(default=0, ge=0)  # index into the client's cards
    amount_minor: int | None = Field(default=None, ge=0)
    currency: _Currency | None = None  # default: the terminal's
    response_code: ResponseCode | None = None  # the issuer's own answer, faults notwithstanding
    entry_mode: Literal["chip", "contactless", "swipe"] | None = None  # default: drawn
    #: The transaction type (default: drawn, an ATM's 15 % balance inquiries included);
    #: a recovery scenario names it, as only the same kind recovers a failure.
    txn_type: Literal["withdrawal", "balance_inquiry", "purchase"] | None = None


class ClientExpectation(BaseModel):
    """What one client's manager should receive (``alerts: 0`` for none)."""

    model_config = _closed
    customer_id: str
    alerts: Range
    manager_id: str | None = None
    severity: Literal["low", "medium", "high", "critical"] | None = None  # of each of its alerts
    outcomes: tuple[Outcome, ...] | None = None  # exact set over the alerts' events
    events: Range | None = None  # failed transactions in its alerts
    currencies: tuple[_Currency, ...] | None = None
    terminals: tuple[str, ...] | None = None


class AlertExpectations(BaseModel):
    """Alerts in the store: total, per client, per manager."""

    model_config = _closed
    total: Range | None = None
    clients: tuple[ClientExpectation, ...] = ()
    managers: dict[str, Range] = {}


class RecoveryExpectation(BaseModel):
    """The recovery watch of one client's alerts (``docs/recovery.md``), when the traffic ends.

    Every alert of the client must have a watch in ``status``; ``same_terminal`` and
    ``seconds`` (first failure → approval, event time) apply to recovered ones, and
    ``terminal_id`` names where the client recovered.
    """

    model_config = _closed
    customer_id: str
    status: Literal["watching", "recovered", "abandoned"]
    same_terminal: bool | None = None
    seconds: Range | None = None
    terminal_id: str | None = None


class FollowUpExpectation(BaseModel):
    """The recovery follow-ups (``docs/alert-channels.md``) one manager's webhook received.

    With any of these in the file, the runner points every manager's webhook at its own
    receiver (otherwise the managers have no channel) and, once the traffic
    ended, lets the recovery watch decide and queues the follow-ups as the
    ``recovery-follow-ups`` job does. ``count`` is the number of follow-up messages
    (``cardmon.recovery.v1``) the manager received, about ``customer_id``'s alerts when
    given: strict, so ``1`` fails on a duplicate; a manager who did not opt in
    (``recovery_follow_up``) expects ``0``. ``result`` and ``contains`` (a
    case-insensitive substring of the subject or text, e.g. ``another terminal``)
    must hold for each message counted.
    """

    model_config = _closed
    manager_id: str
    count: Range
    customer_id: str | None = None
    result: Literal["recovered", "abandoned"] | None = None
    contains: str | None = Field(default=None, min_length=1)


class MetricExpectation(BaseModel):
    """The sum of a metric's samples whose labels include ``labels``."""

    model_config = _closed
    metric: str = Field(pattern=r"^cardmon_[a-z0-9_]+$")
    labels: dict[str, str] = {}
    value: Range


class FailingTerminals(BaseModel):
    """Exactly these terminals show failures of these outcome classes."""

    model_config = _closed
    outcomes: tuple[Outcome, ...] = ("technical", "terminal")
    terminal_ids: tuple[str, ...]


class TerminalExpectation(BaseModel):
    """Per-terminal metrics of one terminal."""

    model_config = _closed
    terminal_id: str
    transactions: Range | None = None
    failures: dict[Outcome, Range] = {}
    #: Offset of its last transaction (``cardmon_terminal_last_transaction_timestamp_seconds``).
    last_transaction_offset_s: Range | None = None


class TerminalExpectations(BaseModel):
    """Terminal-level expectations."""

    model_config = _closed
    failing: FailingTerminals | None = None
    each: tuple[TerminalExpectation, ...] = ()


HealthStateName = Literal["ok", "degraded", "failing", "silent", "offline"]


class HealthExpectation(BaseModel):
    """One terminal's health state (``monitor.health``) when traffic ends.

    ``reason_contains``: a substring (case-insensitive) of one of its reasons, e.g.
    ``chip fallback`` for ``"1h chip fallback ratio 0.21 over 180 chip+fallback reads"``.
    """

    model_config = _closed
    terminal_id: str
    state: HealthStateName
    reason_contains: str | None = Field(default=None, min_length=1)


class IncidentExpectation(BaseModel):
    """One incident the scenario must make (storm control, ``rules/alerting.yaml``).

    ``alerts`` counts the VIP alerts linked to it, ``managers`` the managers of
    those clients (each of whom got one notice instead of a message per alert).
    """

    model_config = _closed
    scope: Literal["terminal", "merchant", "region", "issuer", "network"]
    scope_key: str
    flapping: bool | None = None
    ended: bool | None = None
    alerts: Range | None = None
    managers: tuple[str, ...] | None = None


class IncidentExpectations(BaseModel):
    """Incidents: how many in all, how many no broader incident holds, and the ones that must be there."""

    model_config = _closed
    total: Range | None = None
    top_level: Range | None = None
    each: tuple[IncidentExpectation, ...] = ()


class Expectations(BaseModel):
    """The known answer.

    ``health`` is checked once, in event time, at the last event's offset or at
    ``health_at_offset_s`` if given (later than the last event: silence goes on
    after the traffic ends); ``health_others`` is what every other terminal of the
    fleet must be then: ``ok``, ``not_failing`` (ok or degraded) or ``any``.
    """

    model_config = _closed
    alerts: AlertExpectations = AlertExpectations()
    incidents: IncidentExpectations = IncidentExpectations()
    recoveries: tuple[RecoveryExpectation, ...] = ()
    follow_ups: tuple[FollowUpExpectation, ...] = ()
    metrics: tuple[MetricExpectation, ...] = ()
    terminals: TerminalExpectations = TerminalExpectations()
    health: tuple[HealthExpectation, ...] = ()
    health_others: Literal["ok", "not_failing", "any"] | None = None
    health_at_offset_s: float | None = Field(default=None, ge=0)


class Scenario(BaseModel):
    """One scenario file."""

    model_config = _closed
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str
    seed: int = 7
    start: AwareDatetime
    fleet: FleetSpec
    managers: tuple[Manager, ...]
    vips: tuple[VipSpec, ...] = ()
    traffic: Traffic
    visits: tuple[Visit, ...] = ()
    faults: tuple[Fault, ...] = ()
    expect: Expectations

    @model_validator(mode="after")
    def _references(self) -> Self:
        terminals = {t.terminal_id for t in self.fleet.terminals}
        managers = {m.manager_id for m in self.managers}
        vips = {v.customer_id: v for v in self.vips}
        problems = [f"vip {v.customer_id}: unknown manager {v.manager_id}"
                    for v in self.vips if v.manager_id not in managers]
        for visit in self.visits:
            if visit.terminal_id not in terminals:
                problems.append(f"visit at {visit.at_s:g} s: unknown terminal {visit.terminal_id}")
            if visit.customer_id not in vips:
                problems.append(f"visit at {visit.at_s:g} s: unknown VIP {visit.customer_id}")
            elif visit.card >= len(vips[visit.customer_id].cards):
                problems.append(f"visit at {visit.at_s:g} s: {visit.customer_id} has no card {visit.card}")
        problems += [f"fault {f.kind}: unknown terminal {f.terminal_id}" for f in self.faults
                     if hasattr(f, "terminal_id") and f.terminal_id not in terminals]
        problems += [f"expect.alerts.clients: unknown VIP {c.customer_id}"
                     for c in self.expect.alerts.clients if c.customer_id not in vips]
        problems += [f"expect.recoveries: unknown VIP {r.customer_id}"
                     for r in self.expect.recoveries if r.customer_id not in vips]
        problems += [f"expect.follow_ups: unknown manager {f.manager_id}"
                     for f in self.expect.follow_ups if f.manager_id not in managers]
        problems += [f"expect.follow_ups: unknown VIP {f.customer_id}" for f in self.expect.follow_ups
                     if f.customer_id is not None and f.customer_id not in vips]
        problems += [f"expect.alerts.managers: unknown manager {m}"
                     for m in self.expect.alerts.managers if m not in managers]
        problems += [f"expect.incidents: unknown manager {m}" for i in self.expect.incidents.each
                     for m in (i.managers or ()) if m not in managers]
        named = [t.terminal_id for t in self.expect.terminals.each]
        if self.expect.terminals.failing is not None:
            named += self.expect.terminals.failing.terminal_ids
        problems += [f"expect.terminals: unknown terminal {t}" for t in named if t not in terminals]
        health = [h.terminal_id for h in self.expect.health]
        problems += [f"expect.health: unknown terminal {t}" for t in health if t not in terminals]
        problems += [f"expect.health: terminal {t} named twice" for t in sorted(set(health))
                     if health.count(t) > 1]
        if problems:
            raise ValueError("; ".join(problems))
        return self


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate one scenario file.

    Raises:
        ScenarioError: the file is missing, is not YAML, or breaks the schema; the
            message names the file and each offending key.
    """
    source = Path(path)
    # Read strictly, as the rule files are: a key written twice is refused, not overwritten.
    data = RuleFile.read(source, error=ScenarioError, what="scenario").document
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:
        lines = [f"{'.'.join(map(str, e['loc'])) or '(file)'}: {e['msg']}" for e in error.errors()]
        raise ScenarioError(f"{source}: invalid scenario\n  " + "\n  ".join(lines)) from error


def list_scenarios(directory: Path = SCENARIOS_DIR) -> list[str]:
    """Names of the scenarios in ``directory`` (file stems, sorted)."""
    return sorted(path.stem for path in directory.glob("*.yaml"))


def resolve_scenario(name_or_path: str, directory: Path = SCENARIOS_DIR) -> Scenario:
    """Load a library scenario by name, or any scenario file by path.

    Raises:
        ScenarioError: no such scenario, or the file breaks the schema.
    """
    path = Path(name_or_path)
    if not path.is_file():
        path = directory / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ScenarioError(f"no scenario {name_or_path!r}; known: {', '.join(list_scenarios(directory))}")
    return load_scenario(path)
