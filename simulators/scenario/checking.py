"""Checking a scenario: compare what the monitor did with the file's ``expect`` section.

:func:`check` takes the :class:`~simulators.scenario.schema.Expectations` and what was
:class:`Observed` (the store's alerts with their events and incidents, the monitor's
metrics registry, the terminals' health states, what the managers' webhooks received)
and returns one :class:`Check` per expectation, in the order of the file: alerts per client and per manager, the
incidents storm control opened (scope and key, flapping, ended, how many alerts and
which managers), the recovery watch of each named client's alerts (``recoveries``:
status, same terminal or not, seconds to recover), the recovery follow-ups each
manager's webhook received (``follow_ups``: how many, strictly; result; text), metric
sample ranges, which terminals show failures, and terminal health states (``health``,
``health_others``).
A :class:`ScenarioReport` holds the checks of one run and renders them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry

from monitor.alerts.store import Recovery
from monitor.domain import Alert, AlertEvent
from monitor.health.state_rules import HealthState
from monitor.incidents import Incident
from simulators.scenario.schema import Expectations, Range

__all__ = ["Check", "Observed", "ScenarioReport", "check"]


@dataclass(frozen=True, slots=True)
class Check:
    """One expectation and what was observed."""

    name: str  # e.g. "alerts[C-VIP-001].severity"
    expected: str
    observed: str
    passed: bool


@dataclass(frozen=True, slots=True)
class ScenarioReport:
    """The outcome of one scenario run.

    Attributes:
        scenario: the scenario's name.
        checks: one per expectation, in the order of the file.
        produced: events sent to Kafka.
        consumed: valid events the monitor processed.
        seconds: wall-clock duration of the run.
    """

    scenario: str
    checks: tuple[Check, ...]
    produced: int
    consumed: int
    seconds: float

    @property
    def passed(self) -> bool:
        """Every expectation held."""
        return all(c.passed for c in self.checks)

    def render(self) -> str:
        """A readable pass/fail report, one line per expectation."""
        lines = [(f"scenario {self.scenario}: {self.produced} events produced, "
                  f"{self.consumed} consumed in {self.seconds:.1f} s")]
        for c in self.checks:
            mark = "PASS" if c.passed else "FAIL"
            lines.append(f"  {mark}  {c.name}: expected {c.expected}, observed {c.observed}")
        failed = sum(not c.passed for c in self.checks)
        lines.append(f"{'PASSED' if not failed else 'FAILED'}: {len(self.checks) - failed} of "
                     f"{len(self.checks)} expectations hold")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Observed:
    """What the monitor did: its alerts with their events, and its metrics registry."""

    alerts: tuple[Alert, ...]
    events: dict[str, tuple[AlertEvent, ...]]  # <alert_id: its events>
    registry: CollectorRegistry
    start: datetime  # the scenario's start, for offsets
    #: <terminal_id: (health state, reasons), or None if the health book does not know it>,
    #: for every terminal of the fleet, evaluated at ``health_at``.
    health: dict[str, tuple[HealthState, list[str]] | None] = field(default_factory=dict)
    health_at: datetime | None = None
    #: The store's incidents, with the managers of the clients linked to each.
    incidents: tuple[tuple[Incident, frozenset[str]], ...] = ()
    #: <alert_id: its recovery watch> of the alerts that have one.
    recoveries: dict[str, Recovery] = field(default_factory=dict)
    #: <manager_id: the recovery follow-up payloads (``cardmon.recovery.v1``) their
    #: webhook received, in arrival order, duplicates kept>.
    follow_ups: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)


def _sample_sum(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float | None:
    """Sum of the samples called ``name`` whose labels include ``labels``; None if none match."""
    total, found = 0.0, False
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total, found = total + sample.value, True
    return total if found else None


def _terminal_values(registry: CollectorRegistry, name: str, **labels: str) -> dict[str, float]:
    """``{terminal_id: value}`` of a per-terminal sample family, filtered on ``labels``."""
    values: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                tid = sample.labels["terminal_id"]
                values[tid] = values.get(tid, 0.0) + sample.value
    return values


def _range_check(name: str, expected: Range, value: float | None) -> Check:
    ok = value is not None and expected.contains(value)
    shown = "absent" if value is None else f"{value:g}"
    return Check(name, str(expected), shown, ok)


def _set_check(name: str, expected: set[str], observed: set[str]) -> Check:
    return Check(name, str(sorted(expected)), str(sorted(observed)), expected == observed)


def _shown(state: tuple[HealthState, list[str]] | None) -> str:
    if state is None:
        return "unknown (no transaction)"
    level, reasons = state
    return f"{level.label} ({'; '.join(reasons)})" if reasons else level.label


def _health_checks(expect: Expectations, observed: Observed) -> list[Check]:
    """The ``health`` and ``health_others`` expectations against the evaluated states."""
    checks: list[Check] = []
    at = ("" if observed.health_at is None
          else f" at {(observed.health_at - observed.start).total_seconds():g} s")
    for wanted in expect.health:
        state = observed.health.get(wanted.terminal_id)
        expected = wanted.state
        passed = state is not None and state[0].label == wanted.state
        if wanted.reason_contains is not None:
            expected += f" with a reason containing {wanted.reason_contains!r}"
            needle = wanted.reason_contains.lower()
            passed = passed and state is not None and any(needle in r.lower() for r in state[1])
        checks.append(Check(f"health[{wanted.terminal_id}]{at}", expected, _shown(state), passed))
    others = expect.health_others
    if others is not None and others != "any":
        named = {h.terminal_id for h in expect.health}
        allowed = {HealthState.OK} if others == "ok" else {HealthState.OK, HealthState.DEGRADED}
        wrong = {tid: state for tid, state in sorted(observed.health.items())
                 if tid not in named and (state is None or state[0] not in allowed)}
        shown = "; ".join(f"{tid} {_shown(state)}" for tid, state in wrong.items())
        checks.append(Check(f"health of the other terminals{at}",
                            "all ok" if others == "ok" else "all ok or degraded",
                            shown or "as expected", not wrong))
    return checks


def _incident_checks(expect: Expectations, observed: Observed) -> list[Check]:
    """The ``incidents`` expectations against the store's incidents."""
    spec = expect.incidents
    checks: list[Check] = []
    if spec.total is not None:
        checks.append(_range_check("incidents.total", spec.total, len(observed.incidents)))
    if spec.top_level is not None:
        top = sum(incident.parent_id is None for incident, _ in observed.incidents)
        checks.append(_range_check("incidents.top_level", spec.top_level, top))
    for wanted in spec.each:
        name = f"incidents[{wanted.scope} {wanted.scope_key}]"
        found = [(i, m) for i, m in observed.incidents
                 if (i.scope, i.scope_key) == (wanted.scope, wanted.scope_key)]
        checks.append(Check(f"{name}.count", "1", str(len(found)), len(found) == 1))
        if len(found) != 1:
            continue
        incident, managers = found[0]
        if wanted.flapping is not None:
            checks.append(Check(f"{name}.flapping", str(wanted.flapping).lower(),
                                f"{str(incident.flapping).lower()} ({incident.relapses} relapses)",
                                incident.flapping == wanted.flapping))
        if wanted.ended is not None:
            ended = incident.ended_at is not None
            checks.append(Check(f"{name}.ended", str(wanted.ended).lower(), str(ended).lower(),
                                ended == wanted.ended))
        if wanted.alerts is not None:
            checks.append(_range_check(f"{name}.alerts", wanted.alerts, incident.alert_count))
        if wanted.managers is not None:
            checks.append(_set_check(f"{name}.managers", set(wanted.managers), set(managers)))
    return checks


def _recovery_checks(expect: Expectations, observed: Observed) -> list[Check]:
    """The ``recoveries`` expectations against the store's watches of each client's alerts."""
    checks: list[Check] = []
    for wanted in expect.recoveries:
        prefix = f"recoveries[{wanted.customer_id}]"
        alerts = [a for a in observed.alerts if a.customer_id == wanted.customer_id]
        watches = [observed.recoveries.get(a.alert_id) for a in alerts]
        statuses = {"none" if w is None else w.status for w in watches}
        checks.append(Check(f"{prefix}.status", wanted.status,
                            ", ".join(sorted(statuses)) or "no alert",
                            bool(alerts) and statuses == {wanted.status}))
        found = [w for w in watches if w is not None]
        if wanted.same_terminal is not None:
            same = {str(w.same_terminal).lower() for w in found}
            checks.append(Check(f"{prefix}.same_terminal", str(wanted.same_terminal).lower(),
                                ", ".join(sorted(same)) or "no watch",
                                same == {str(wanted.same_terminal).lower()}))
        if wanted.terminal_id is not None:
            checks.append(_set_check(f"{prefix}.terminal", {wanted.terminal_id},
                                     {str(w.terminal_id) for w in found}))
        if wanted.seconds is not None:
            seconds = [w.seconds_to_recovery for w in found]
            ok = bool(seconds) and all(s is not None and wanted.seconds.contains(s)
                                       for s in seconds)
            shown = ", ".join("none" if s is None else f"{s:g}" for s in seconds) or "no watch"
            checks.append(Check(f"{prefix}.seconds", str(wanted.seconds), shown, ok))
    return checks


def _follow_up_checks(expect: Expectations, observed: Observed) -> list[Check]:
    """The ``follow_ups`` expectations against what each manager's webhook received."""
    checks: list[Check] = []
    for wanted in expect.follow_ups:
        about = "" if wanted.customer_id is None else f" about {wanted.customer_id}"
        prefix = f"follow_ups[{wanted.manager_id}{about}]"
        received = [p for p in observed.follow_ups.get(wanted.manager_id, ())
                    if wanted.customer_id is None or p.get("customer_id") == wanted.customer_id]
        ids = [str(p.get("alert_id")) for p in received]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        shown = f"{len(received):g}" + (f" (twice or more for {', '.join(twice)})" if twice else "")
        checks.append(Check(f"{prefix}.count", str(wanted.count), shown,
                            wanted.count.contains(len(received))))
        if wanted.result is not None:
            results = {str(p.get("result")) for p in received}
            checks.append(Check(f"{prefix}.result", wanted.result,
                                ", ".join(sorted(results)) or "no follow-up",
                                bool(received) and results == {wanted.result}))
        if wanted.contains is not None:
            needle = wanted.contains.lower()
            texts = [f"{p.get('subject', '')}\n{p.get('text', '')}" for p in received]
            missing = [t.splitlines()[0] for t in texts if needle not in t.lower()]
            shown = (f"{len(texts) - len(missing)} of {len(texts)} contain it"
                     + (f"; not: {'; '.join(missing)}" if missing else "")) if texts else "no follow-up"
            checks.append(Check(f"{prefix}.contains", repr(wanted.contains), shown,
                                bool(texts) and not missing))
    return checks


def check(expect: Expectations, observed: Observed) -> list[Check]:
    """Compare what happened with what the scenario expected; one :class:`Check` per expectation."""
    checks: list[Check] = []
    alerts = observed.alerts
    spec = expect.alerts
    if spec.total is not None:
        checks.append(_range_check("alerts.total", spec.total, len(alerts)))
    for client in spec.clients:
        mine = [a for a in alerts if a.customer_id == client.customer_id]
        prefix = f"alerts[{client.customer_id}]"
        checks.append(_range_check(f"{prefix}.count", client.alerts, len(mine)))
        events = [e for a in mine for e in observed.events[a.alert_id]]
        if client.manager_id is not None:
            checks.append(_set_check(f"{prefix}.manager", {client.manager_id},
                                     {a.manager.manager_id for a in mine}))
        if client.severity is not None:
            checks.append(_set_check(f"{prefix}.severity", {client.severity}, {a.severity for a in mine}))
        if client.outcomes is not None:
            checks.append(_set_check(f"{prefix}.outcomes", set(client.outcomes), {e.outcome for e in events}))
        if client.events is not None:
            checks.append(_range_check(f"{prefix}.events", client.events, len(events)))
        if client.currencies is not None:
            checks.append(_set_check(f"{prefix}.currencies", set(client.currencies),
                                     {e.currency for e in events}))
        if client.terminals is not None:
            checks.append(_set_check(f"{prefix}.terminals", set(client.terminals),
                                     {e.terminal_id for e in events}))
    for manager_id, expected in spec.managers.items():
        count = sum(a.manager.manager_id == manager_id for a in alerts)
        checks.append(_range_check(f"alerts.manager[{manager_id}]", expected, count))
    for metric in expect.metrics:
        label_text = ",".join(f'{k}="{v}"' for k, v in metric.labels.items())
        checks.append(_range_check(f"metric {metric.metric}{{{label_text}}}", metric.value,
                                   _sample_sum(observed.registry, metric.metric, metric.labels)))
    terminals = expect.terminals
    if terminals.failing is not None:
        with_failures: set[str] = set()
        for outcome in terminals.failing.outcomes:
            values = _terminal_values(observed.registry, "cardmon_terminal_failures_total", outcome=outcome)
            with_failures |= {tid for tid, value in values.items() if value > 0}
        checks.append(_set_check(f"terminals with {'/'.join(terminals.failing.outcomes)} failures",
                                 set(terminals.failing.terminal_ids), with_failures))
    for terminal in terminals.each:
        prefix = f"terminal[{terminal.terminal_id}]"
        if terminal.transactions is not None:
            value = _terminal_values(observed.registry, "cardmon_terminal_transactions_total")
            checks.append(_range_check(f"{prefix}.transactions", terminal.transactions,
                                       value.get(terminal.terminal_id)))
        for outcome, expected in terminal.failures.items():
            value = _terminal_values(observed.registry, "cardmon_terminal_failures_total", outcome=outcome)
            checks.append(_range_check(f"{prefix}.failures[{outcome}]", expected,
                                       value.get(terminal.terminal_id, 0.0)))
        if terminal.last_transaction_offset_s is not None:
            last = _terminal_values(observed.registry,
                                    "cardmon_terminal_last_transaction_timestamp_seconds")
            at = last.get(terminal.terminal_id)
            offset = None if at is None else at - observed.start.timestamp()
            checks.append(_range_check(f"{prefix}.last_transaction_offset_s",
                                       terminal.last_transaction_offset_s, offset))
    checks += _incident_checks(expect, observed)
    checks += _recovery_checks(expect, observed)
    checks += _follow_up_checks(expect, observed)
    checks += _health_checks(expect, observed)
    return checks
