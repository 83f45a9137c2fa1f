"""One definition of each fault and one traffic mix, shared by the synthetic fleet and the scenario files."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pydantic
import pytest

from simulators.faults import IssuerOutage, Silent, TerminalFault, is_silent
from simulators.fleet import build_fleet
from simulators.scenario import resolve_scenario
from simulators.scenario.schema import Scenario
from simulators.sources.synthetic import default_faults, synthetic_events
from simulators.traffic import AUTHORIZATION_TIMEOUT_MS, FLEET_MIX, answer

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_a_scenario_file_and_python_build_the_same_fault() -> None:
    """A fault read from a scenario file is the class the synthetic fleet takes, equal to one built in Python."""
    scenario = resolve_scenario("atm-failing")
    from_file = [f for f in scenario.faults if isinstance(f, TerminalFault)]
    assert from_file
    fault = from_file[0]
    assert fault == TerminalFault(terminal_id=fault.terminal_id, start_s=fault.start_s, end_s=fault.end_s,
                                  response_code=fault.response_code)
    outage = IssuerOutage(start_s=60, duration_s=30)
    assert (outage.kind, outage.share, outage.response_code) == ("issuer_outage", 0.9, "91")


def test_faults_are_frozen_and_closed() -> None:
    """A fault cannot be changed after it is made, and a misspelt field is refused, in Python as in a file."""
    fault = TerminalFault(terminal_id="A1", start_s=0, end_s=10)
    with pytest.raises(pydantic.ValidationError):
        fault.start_s = 5  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="end_offset_s"):
        TerminalFault(terminal_id="A1", start_s=0, end_offset_s=10)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError, match="response_code"):
        TerminalFault(terminal_id="A1", start_s=0, response_code="not a code")


def test_scenario_schema_takes_the_shared_faults() -> None:
    """The scenario schema's fault list holds the classes of simulators.faults, picked by ``kind``."""
    data = resolve_scenario("silent-pos").model_dump(mode="json")
    data["faults"] = [{"kind": "silent", "terminal_id": data["fleet"]["terminals"][0]["terminal_id"],
                       "start_s": 5}]
    (fault,) = Scenario.model_validate(data).faults
    assert isinstance(fault, Silent) and is_silent([fault], fault.terminal_id, 5.0)
    assert not is_silent([fault], fault.terminal_id, 4.9) and not is_silent([fault], "OTHER", 6.0)


def test_a_terminal_fault_wins_over_a_fleet_wide_one_in_any_order() -> None:
    """The synthetic fleet applies a terminal's own fault before an issuer outage, whatever order they are given in."""
    fleet = build_fleet(terminals=10, seed=3)
    faults = default_faults(fleet, 30)
    forward = list(synthetic_events(fleet, start=START, duration_s=30, faults=faults, seed=3))
    backward = list(synthetic_events(fleet, start=START, duration_s=30, faults=faults[::-1], seed=3))
    assert forward == backward


def test_the_shared_answer_times_out_a_failing_terminal_and_declines_normally_elsewhere() -> None:
    """A terminal fault without a response code is a timeout at the authorization limit; other terminals get normal answers."""
    rng = random.Random(1)
    fault = TerminalFault(terminal_id="A1", start_s=0, end_s=10, response_code=None)
    assert answer(rng, terminal_id="A1", channel="ATM", offset=5, entry_mode="chip", faults=[fault],
                  mix=FLEET_MIX) == (None, AUTHORIZATION_TIMEOUT_MS, "chip")
    codes = {answer(rng, terminal_id="A2", channel="ATM", offset=5, entry_mode="chip", faults=[fault],
                    mix=FLEET_MIX)[0] for _ in range(5_000)}
    assert "00" in codes and codes <= {"00", *dict(FLEET_MIX.declines)}
    quiet = {answer(rng, terminal_id="A2", channel="ATM", offset=5, entry_mode="chip", faults=[fault],
                    mix=FLEET_MIX, normal_declines=False)[0] for _ in range(500)}
    assert quiet == {"00"}
