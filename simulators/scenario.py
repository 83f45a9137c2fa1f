"""Fault scenarios with a known answer: load, generate, run through Kafka and the monitor, check.

A scenario is one YAML file in ``simulators/scenarios/`` (schema: :class:`Scenario`,
validated on load). It declares

* ``fleet``: the terminals (ID, channel, city, region, opening hours and time zone
  where they matter); a terminal with ``background: false`` (a foreign ATM) only
  sees the scripted ``visits``;
* ``managers`` and ``vips``: the VIP registry (clients, tiers, cards, managers);
* ``traffic``: background transactions of ordinary (non-VIP) clients — Poisson
  arrivals at ``rate`` per second of *event* time for ``duration_s`` seconds,
  answered ``00`` except for the ``declines`` distribution (customer and card
  classes only, so technical failures come from the faults alone);
* ``visits``: scripted transactions of VIP clients, by offset in seconds;
* ``faults``: what goes wrong, by offset: ``terminal_fault``, ``issuer_outage``,
  ``card_wave``, ``silent``, ``flapping``, ``chip_degradation``
  (:data:`Fault`); visits go through the same faults as background traffic;
* ``expect``: the known answer (:class:`Expectations`): alerts per client and per
  manager, the incidents storm control opens (scope and key, flapping, ended, how
  many alerts and which managers), metric sample ranges from the monitor's
  registry, which terminals show failures, and terminal health states (``health``,
  ``health_others``).

Event time is compressed: all events are produced as fast as possible with their
synthetic ``occurred_at`` (from the scenario's ``start``), and the monitor groups in
event time, so thirty minutes of traffic run in seconds. Generation is
deterministic given the scenario (its ``seed`` included).

:func:`run_scenario` starts the embedded broker unless one is given, writes the VIP
and terminal registries to a temporary folder, runs a :class:`monitor.app.MonitorApp`
on isolated settings (``jsonl`` sink, its own topic and group), produces the events
(:func:`simulators.producer.produce`), waits until every event is consumed and every
delivery has left the outbox, then :func:`check` compares what happened with
``expect`` and returns a :class:`ScenarioReport`.

Terminal health is evaluated once, in **event time**, after every event is consumed:
at the last event's ``occurred_at`` (or ``expect.health_at_offset_s``) the runner
runs the silent detector, marks its result in the health book and evaluates the
book, as the monitor's scheduled jobs would at that instant. (The monitor's own
wall-clock evaluation job is pushed out of the run: scenario events lie in the past,
and a wall-clock evaluation would drop every terminal as stale.) The silent
detector's baseline is the generator's own: each background terminal expects
``traffic.rate × 3600 / background terminals`` transactions in every hour of the
week (it only applies while the terminal is open), and it starts watching at the
scenario's ``start``.
"""

from __future__ import annotations

import asyncio
import math
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import polars as pl
from prometheus_client import CollectorRegistry

from monitor.app import MonitorApp
from monitor.config import isolated_settings
from monitor.domain import Alert, AlertEvent
from monitor.health.service import TerminalHealthService
from monitor.health.silent import HOURS_PER_WEEK, Baseline
from monitor.health.state import HealthState
from monitor.incidents import Incident
from monitor.pipeline.consumer import ensure_topics
from monitor.testing.broker import EmbeddedBroker, free_port
from simulators.producer import produce
from simulators.scenario_schema import (
    CardWave,
    ChipDegradation,
    Expectations,
    Flapping,
    IssuerOutage,
    Range,
    Scenario,
    ScenarioError,
    Silent,
    TerminalFault,
    TerminalSpec,
    load_scenario,
)
from simulators.synthetic import AUTHORIZATION_TIMEOUT_MS, Card, Customer, Fleet, write_registry

__all__ = [
    "SCENARIOS_DIR",
    "Check",
    "ScenarioError",
    "ScenarioReport",
    "check",
    "list_scenarios",
    "load_scenario",
    "resolve_scenario",
    "run_scenario",
    "scenario_events",
]

#: The scenario library shipped with cardmon.
SCENARIOS_DIR: Final = Path(__file__).resolve().parent / "scenarios"
_WITHDRAWALS_MINOR: Final = (2_000, 4_000, 5_000, 6_000, 10_000, 20_000)
_PROCESSING_CODES: Final = {"purchase": "000000", "withdrawal": "010000", "balance_inquiry": "310000"}


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


# -- generation --------------------------------------------------------------------------------


def _fleet(scenario: Scenario) -> Fleet:
    """The scenario's registry as a :class:`simulators.synthetic.Fleet` (for ``write_registry``)."""
    vips = tuple(
        Customer(customer_id=vip.customer_id, name=vip.name, tier=vip.tier, manager_id=vip.manager_id,
                 cards=tuple(Card(card_ref=c.card_ref, pan_masked=c.pan_masked) for c in vip.cards))
        for vip in scenario.vips
    )
    return Fleet(terminals=(), customers=vips, managers=tuple(scenario.managers))


def _write_terminals(scenario: Scenario, path: Path) -> Path:
    columns = ("terminal_id", "channel", "region", "branch_id", "merchant_id", "timezone", "opening_hours")
    pl.DataFrame([{c: getattr(t, c) for c in columns} for t in scenario.fleet.terminals],
                 schema={c: pl.String for c in columns}).write_csv(path)
    return path


def _write_baseline(scenario: Scenario, path: Path) -> Path:
    """The silent detector's baseline: each background terminal's Poisson rate, every hour of the week."""
    background = [t.terminal_id for t in scenario.fleet.terminals if t.background]
    per_hour = scenario.traffic.rate * 3600 / max(len(background), 1)
    Baseline(pl.DataFrame(
        {"terminal_id": sorted(background),
         **{f"h{hour}": [per_hour] * len(background) for hour in range(HOURS_PER_WEEK)}},
        schema={"terminal_id": pl.String, **{f"h{hour}": pl.Float32 for hour in range(HOURS_PER_WEEK)}},
    )).write(path)
    return path


def _in(offset: float, start: float, end: float | None) -> bool:
    return start <= offset and (end is None or offset < end)


class _Answerer:
    """Applies the faults to one transaction: response code (None = timeout), latency, entry mode."""

    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self._faults = scenario.faults
        self._declines = tuple(scenario.traffic.declines.items())
        self._rng = rng

    def silent(self, terminal_id: str, offset: float) -> bool:
        return any(isinstance(f, Silent) and f.terminal_id == terminal_id and _in(offset, f.start_s, f.end_s)
                   for f in self._faults)

    def answer(self, terminal: TerminalSpec, offset: float, entry_mode: str,
               *, normal_declines: bool = True) -> tuple[str | None, float, str]:
        """The answer to one transaction; without ``normal_declines`` it is ``00`` unless a fault hits."""
        rng = self._rng
        for fault in self._faults:
            if getattr(fault, "terminal_id", terminal.terminal_id) != terminal.terminal_id:
                continue
            if isinstance(fault, TerminalFault) and _in(offset, fault.start_s, fault.end_s):
                return self._failed(fault.response_code, entry_mode)
            if isinstance(fault, Flapping) and _in(offset, fault.start_s, fault.end_s) \
                    and int((offset - fault.start_s) // fault.period_s) % 2 == 0:
                return self._failed(fault.response_code, entry_mode)
            if isinstance(fault, ChipDegradation) and entry_mode == "chip" and offset >= fault.start_s:
                progress = min(1.0, (offset - fault.start_s) / max(fault.full_at_s - fault.start_s, 1e-9))
                if rng.random() < progress * fault.max_failure_share:
                    if rng.random() < fault.fallback_share:
                        entry_mode = "fallback"  # chip read failed: the stripe is read (ISO 8583 field 22: 80)
                        break
                    return fault.response_code, rng.lognormvariate(math.log(350.0), 0.3), "chip"
            if isinstance(fault, IssuerOutage | CardWave) \
                    and _in(offset, fault.start_s, fault.start_s + fault.duration_s) \
                    and rng.random() < fault.share:
                # An outage answers after the switch's own timeout; a card decline is quick.
                median = 8_000.0 if isinstance(fault, IssuerOutage) else 300.0
                return fault.response_code, rng.lognormvariate(math.log(median), 0.2), entry_mode
        latency = rng.lognormvariate(math.log(450.0 if terminal.channel == "ATM" else 300.0), 0.35)
        draw = rng.random() if normal_declines else 1.0
        for code, probability in self._declines:
            if draw < probability:
                return code, latency, entry_mode
            draw -= probability
        return "00", latency, entry_mode

    def _failed(self, code: str | None, entry_mode: str) -> tuple[str | None, float, str]:
        if code is None:
            return None, AUTHORIZATION_TIMEOUT_MS, entry_mode
        return code, self._rng.lognormvariate(math.log(150.0), 0.3), entry_mode


def scenario_events(scenario: Scenario) -> Iterator[dict[str, Any]]:
    """The scenario's transactions (background and visits, faults applied) in time order.

    Yields:
        Contract-v1 event dicts; ``occurred_at`` is RFC 3339 with the start's offset.
        Same scenario (seed included), same events, byte for byte.
    """
    rng = random.Random(f"scenario-{scenario.name}-{scenario.seed}")
    traffic = scenario.traffic
    terminals = {t.terminal_id: t for t in scenario.fleet.terminals}
    background = [t for t in scenario.fleet.terminals if t.background]
    clients = [Card(card_ref=f"tok_{rng.getrandbits(64):016x}",
                    pan_masked=f"{rng.choice(('497010', '535522'))}******{rng.randrange(10_000):04d}")
               for _ in range(traffic.customers)]
    arrivals: list[tuple[float, int, dict[str, Any]]] = []  # (offset, order, partial event)
    offset = 0.0
    while background:
        offset += rng.expovariate(traffic.rate)
        if offset >= traffic.duration_s:
            break
        drawn = rng.choice(clients)
        arrivals.append((offset, len(arrivals), {
            "terminal": rng.choice(background), "card": drawn, "customer_id": None,
            "amount_minor": None, "currency": None, "response_code": None, "entry_mode": None}))
    cards = {vip.customer_id: vip.cards for vip in scenario.vips}
    for visit in scenario.visits:
        arrivals.append((visit.at_s, len(arrivals), {
            "terminal": terminals[visit.terminal_id], "card": cards[visit.customer_id][visit.card],
            "customer_id": visit.customer_id, "amount_minor": visit.amount_minor,
            "currency": visit.currency, "response_code": visit.response_code,
            "entry_mode": visit.entry_mode}))
    arrivals.sort(key=lambda item: (item[0], item[1]))
    answerer = _Answerer(scenario, rng)
    stans = {terminal_id: rng.randrange(1_000_000) for terminal_id in terminals}
    for index, (at_s, _, spec) in enumerate(arrivals, start=1):
        terminal: TerminalSpec = spec["terminal"]
        if answerer.silent(terminal.terminal_id, at_s):
            continue
        at = scenario.start + timedelta(seconds=at_s)
        if terminal.channel == "ATM":
            txn_type = "withdrawal" if rng.random() < 0.85 else "balance_inquiry"
            amount = rng.choice(_WITHDRAWALS_MINOR) if txn_type == "withdrawal" else 0
            entry_mode, mti = "chip", "0200"
        else:
            txn_type, mti = "purchase", "0100"
            amount = min(500_000, max(50, round(rng.lognormvariate(math.log(2_500), 1.0))))
            entry_mode = rng.choices(("chip", "contactless", "swipe"), (0.6, 0.35, 0.05))[0]
        entry_mode = spec["entry_mode"] or entry_mode
        # A VIP's scripted visit is approved unless a fault (or its own response code) says otherwise.
        code, latency, entry_mode = answerer.answer(terminal, at_s, entry_mode,
                                                    normal_declines=spec["customer_id"] is None)
        if spec["response_code"] is not None:  # a scripted outcome (the issuer's own decision)
            code = spec["response_code"]
        if spec["amount_minor"] is not None:
            amount = spec["amount_minor"]
        stan = stans[terminal.terminal_id]
        stans[terminal.terminal_id] = (stan + 1) % 1_000_000
        card: Card = spec["card"]
        event: dict[str, Any] = {
            "event_id": f"{scenario.name}-{scenario.seed}-{index:07d}",
            "occurred_at": at.isoformat(timespec="milliseconds"),
            "channel": terminal.channel, "terminal_id": terminal.terminal_id,
            "txn_type": txn_type, "amount_minor": amount,
            "currency": spec["currency"] or terminal.currency,
            "card_ref": card.card_ref, "pan_masked": card.pan_masked,
            "status": "completed" if code is not None else "timeout",
            "latency_ms": round(latency, 1), "entry_mode": entry_mode,
            "city": terminal.city, "region": terminal.region, "mti": mti,
            "processing_code": _PROCESSING_CODES[txn_type], "stan": f"{stan:06d}",
            "rrn": f"{at.year % 10}{at.timetuple().tm_yday:03d}{at.hour:02d}{stan:06d}",
        }
        if spec["customer_id"] is not None:
            event["customer_id"] = spec["customer_id"]
        if code is not None:
            event["response_code"] = code
        for optional in ("merchant_id", "branch_id"):
            if getattr(terminal, optional) is not None:
                event[optional] = getattr(terminal, optional)
        yield event


# -- checking ----------------------------------------------------------------------------------


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
    checks += _health_checks(expect, observed)
    return checks


def _evaluate_health(health: TerminalHealthService, at: datetime,
                     terminal_ids: list[str]) -> dict[str, tuple[HealthState, list[str]] | None]:
    """Silent detection, then the health book, at event time ``at``: what the scheduled jobs do."""
    silent = health.detector.evaluate(at)
    health.book.mark_silent(silent, at)
    health.book.evaluate(at)
    return {tid: health.book.state_of(tid) for tid in terminal_ids}


# -- running -----------------------------------------------------------------------------------


async def _wait(condition: Any, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"scenario run: timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)


async def run_scenario(scenario: Scenario, *, bootstrap_servers: str | None = None,
                       workdir: Path | None = None, timeout: float = 60.0) -> ScenarioReport:
    """Run ``scenario`` through Kafka and a monitor, then check its expectations.

    Args:
        scenario: from :func:`load_scenario` / :func:`resolve_scenario`.
        bootstrap_servers: an existing Kafka; ``None`` starts the embedded broker.
        workdir: folder for the registries, alert store and ``alerts.jsonl`` (a temp dir if None).
        timeout: seconds to wait for consumption and delivery before giving up.

    Returns:
        The :class:`ScenarioReport` (``passed`` tells the verdict).

    Raises:
        TimeoutError: the monitor did not consume every event, or deliver every alert, in time.
        monitor.testing.broker.BrokerError: the embedded broker could not start.
        aiokafka.errors.KafkaError: the broker could not be reached.
    """
    started = time.monotonic()
    broker = EmbeddedBroker().start() if bootstrap_servers is None else None
    bootstrap = broker.bootstrap_servers if broker is not None else str(bootstrap_servers)
    work = workdir or Path(tempfile.mkdtemp(prefix=f"cardmon-scenario-{scenario.name}-"))
    work.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    try:
        customers, managers = write_registry(_fleet(scenario), work / "registry")
        terminals = _write_terminals(scenario, work / "registry" / "terminals.csv")
        topic = f"scenario.{scenario.name}.{run_id}"
        settings = isolated_settings(
            kafka={"bootstrap_servers": bootstrap, "topic": topic, "dead_letter_topic": f"{topic}.dlq",
                   "group_id": f"cardmon-scenario-{run_id}", "batch_timeout_ms": 50},
            registry={"customers_path": customers, "managers_path": managers},
            # A scenario replays its own timeline from a fixed start: its failures are
            # never stale (alerting.stale_after_seconds is for a live monitor).
            alerting={"store_path": work / "alerts.db", "sinks": ["jsonl"],
                      "jsonl_path": work / "alerts.jsonl", "poll_interval_seconds": 0.05,
                      "stale_after_seconds": None},
            # The wall-clock evaluation job never runs during a scenario (see the module doc).
            health={"terminals_path": terminals, "consume_status": False,
                    "baseline_path": _write_baseline(scenario, work / "registry" / "baseline.parquet"),
                    "evaluate_interval_seconds": 86_400},
            metrics={"host": "127.0.0.1", "port": free_port()},
            api={"enabled": False},  # nobody acknowledges in a scenario; never hold a fixed port
        )
        await ensure_topics(settings.kafka, partitions=1)
        monitor = MonitorApp(settings, registry=CollectorRegistry())
        monitor.health.detector.started_at = scenario.start  # watching since the scenario's start
        last_event: list[datetime] = [scenario.start]

        def tracked() -> Iterator[dict[str, Any]]:
            for event in scenario_events(scenario):
                last_event[0] = max(last_event[0], datetime.fromisoformat(event["occurred_at"]))
                yield event

        stop = asyncio.Event()
        task = asyncio.create_task(monitor.run(stop, create_topics=False))
        try:
            produced = await produce(tracked(), bootstrap_servers=bootstrap, topic=topic)
            await _wait(lambda: monitor.consumer.events >= produced or task.done(),
                        timeout=timeout, what=f"{produced} events to be consumed")
            await _wait(lambda: task.done() or monitor.store.pending_count() == 0,
                        timeout=timeout, what="every alert to be delivered")
            if task.done():  # the monitor died: surface its error
                await task
            alerts = tuple(monitor.store.list_alerts())
            events = {a.alert_id: tuple(monitor.store.alert_events(a.alert_id)) for a in alerts}
            health_at = last_event[0]
            if scenario.expect.health_at_offset_s is not None:
                health_at = scenario.start + timedelta(seconds=scenario.expect.health_at_offset_s)
                if health_at < last_event[0]:
                    raise ScenarioError(
                        f"expect.health_at_offset_s {scenario.expect.health_at_offset_s:g} is before "
                        f"the last event ({(last_event[0] - scenario.start).total_seconds():g} s)")
            health = _evaluate_health(monitor.health, health_at,
                                      [t.terminal_id for t in scenario.fleet.terminals])
            incidents = tuple(
                (incident, frozenset(a.manager.manager_id for a, _, _ in
                                     monitor.store.incident_alerts(incident.incident_id)))
                for incident in monitor.store.list_incidents(limit=500))
            observed = Observed(alerts=alerts, events=events, registry=monitor.registry,
                                start=scenario.start, health=health, health_at=health_at,
                                incidents=incidents)
            checks = check(scenario.expect, observed)
            consumed = monitor.consumer.events
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=30)
        return ScenarioReport(scenario=scenario.name, checks=tuple(checks), produced=produced,
                              consumed=consumed, seconds=time.monotonic() - started)
    finally:
        if broker is not None:
            broker.stop()
