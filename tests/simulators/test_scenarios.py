"""The scenario library: every scenario passes end to end, the schema refuses bad files, the checker can fail."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from monitor.cli import app as cardmon
from monitor.pipeline.vips import read_registry
from simulators.fleet import write_registry
from simulators.scenario import (
    SCENARIOS_DIR,
    Observed,
    ScenarioError,
    check,
    list_scenarios,
    load_scenario,
    resolve_scenario,
    run_scenario,
    scenario_events,
)
from simulators.scenario.generation import scenario_fleet

LIBRARY = list_scenarios()
REQUIRED = {"issuer-outage", "atm-failing", "chip-degradation", "silent-pos", "flapping-terminal",
            "vip-abroad", "expired-cards"}


def test_library_has_the_required_scenarios() -> None:
    """The library holds at least the seven scenarios the issue names, each valid against the schema."""
    assert REQUIRED <= set(LIBRARY)
    for name in LIBRARY:
        assert resolve_scenario(name).name == name


def test_generation_is_deterministic_and_seeded() -> None:
    """The same scenario generates the same events byte for byte; another seed changes the background traffic."""
    scenario = resolve_scenario("issuer-outage")
    first, second = list(scenario_events(scenario)), list(scenario_events(scenario))
    assert first == second
    other = list(scenario_events(scenario.model_copy(update={"seed": scenario.seed + 1})))
    assert [e["card_ref"] for e in other] != [e["card_ref"] for e in first]


def test_faults_shape_the_traffic() -> None:
    """The silent POS sends nothing after its silence starts and the flapping ATM fails only in its odd half-minutes."""
    silent = resolve_scenario("silent-pos")
    start = silent.start.timestamp()
    late = [e for e in scenario_events(silent) if e["terminal_id"] == "PBOD0009"
            and _ts(e["occurred_at"]) - start >= 600]
    assert late == []
    flapping = resolve_scenario("flapping-terminal")
    start = flapping.start.timestamp()
    for event in scenario_events(flapping):
        if event["terminal_id"] != "AMRS0003":
            continue
        offset = _ts(event["occurred_at"]) - start
        failing = 300 <= offset < 1500 and int((offset - 300) // 30) % 2 == 0
        assert (event["status"] == "timeout") == failing, (offset, event["status"])


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_schema_errors_name_the_key(tmp_path: Path) -> None:
    """A misspelt key, an unknown terminal in a fault and a naive start are refused with their place in the file."""
    data = yaml.safe_load((SCENARIOS_DIR / "atm-failing.yaml").read_text(encoding="utf-8"))
    data["faults"][0]["terminal_id"] = "NOPE0001"
    data["traffic"]["rte"] = 3
    data["start"] = "2026-03-02T09:00:00"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ScenarioError) as error:
        load_scenario(path)
    text = str(error.value)
    assert "traffic.rte" in text and "start" in text and str(path) in text
    del data["traffic"]["rte"]
    data["start"] = "2026-03-02T09:00:00+01:00"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ScenarioError, match="unknown terminal NOPE0001"):
        load_scenario(path)


def test_a_key_written_twice_is_refused(tmp_path: Path) -> None:
    """A scenario is read as strictly as a rule file: a key written twice names its line, not silently overwritten."""
    text = (SCENARIOS_DIR / "atm-failing.yaml").read_text(encoding="utf-8")
    path = tmp_path / "twice.yaml"
    path.write_text(text + "\nname: written-twice\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"duplicate key 'name'"):
        load_scenario(path)


@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", LIBRARY)
async def test_scenario_passes_end_to_end(name: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    """Each scenario, run through the real broker and a MonitorApp, meets every expectation in its file."""
    report = await run_scenario(resolve_scenario(name), bootstrap_servers=kafka_bootstrap,
                                workdir=tmp_path, timeout=60)
    assert report.passed, report.render()
    assert report.consumed == report.produced > 0
    assert len(report.checks) >= 3
    lines = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()] \
        if (tmp_path / "alerts.jsonl").exists() else []
    alerts = [line for line in lines if line.get("schema") == "cardmon.alert.v1"]  # not follow-ups
    expected_total = resolve_scenario(name).expect.alerts.total
    if expected_total is not None and expected_total.min == expected_total.max:
        assert len(alerts) == expected_total.min  # every alert reached the jsonl sink


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_check_fails_on_a_wrong_expectation(kafka_bootstrap: str, tmp_path: Path) -> None:
    """`cardmon simulate scenario FILE --check` exits 1 and marks FAIL when the file expects what did not happen."""
    data = yaml.safe_load((SCENARIOS_DIR / "atm-failing.yaml").read_text(encoding="utf-8"))
    data["expect"]["alerts"]["total"] = 5
    data["expect"]["terminals"]["failing"]["terminal_ids"] = ["ALYS0002"]
    data["expect"]["incidents"]["each"] = [
        {"scope": "terminal", "scope_key": "APAR0001", "flapping": True, "managers": ["RM002"]},
        {"scope": "region", "scope_key": "Île-de-France"}]
    path = tmp_path / "wrong.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(cardmon, ["simulate", "scenario", str(path), "--check",
                                          "--bootstrap-servers", kafka_bootstrap,
                                          "--workdir", str(tmp_path / "work")])
    assert result.exit_code == 1, result.output
    assert "FAIL  alerts.total: expected 5, observed 2" in result.output
    assert "FAIL  terminals with technical/terminal failures: expected ['ALYS0002'], observed ['APAR0001']" \
        in result.output
    assert "PASS  alerts[C-VIP-001].count" in result.output
    assert "FAIL  incidents[terminal APAR0001].flapping: expected true, observed false (0 relapses)" \
        in result.output
    assert "FAIL  incidents[terminal APAR0001].managers: expected ['RM002'], observed ['RM001']" in result.output
    assert "FAIL  incidents[region Île-de-France].count: expected 1, observed 0" in result.output
    assert "FAILED" in result.output


def test_health_expectation_schema(tmp_path: Path) -> None:
    """A health expectation naming an unknown terminal or an unknown state is refused with its place in the file."""
    data = yaml.safe_load((SCENARIOS_DIR / "silent-pos.yaml").read_text(encoding="utf-8"))
    data["expect"]["health"] = [{"terminal_id": "NOPE0001", "state": "silent"}]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ScenarioError, match="expect.health: unknown terminal NOPE0001"):
        load_scenario(path)
    data["expect"]["health"] = [{"terminal_id": "PBOD0009", "state": "asleep"}]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"expect\.health\.0\.state"):
        load_scenario(path)


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_check_fails_on_a_wrong_health_expectation(kafka_bootstrap: str, tmp_path: Path) -> None:
    """`--check` exits 1 with FAIL lines when a scenario expects a healthy terminal silent and all others ok."""
    data = yaml.safe_load((SCENARIOS_DIR / "silent-pos.yaml").read_text(encoding="utf-8"))
    data["expect"]["health"] = [{"terminal_id": "PPAR0005", "state": "silent"}]
    data["expect"]["health_others"] = "ok"  # but PBOD0009, no longer named, is silent
    path = tmp_path / "wrong-health.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(cardmon, ["simulate", "scenario", str(path), "--check",
                                          "--bootstrap-servers", kafka_bootstrap,
                                          "--workdir", str(tmp_path / "work")])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("  FAIL  health[PPAR0005] at 179") and line.endswith(": expected silent, observed ok")
               for line in lines), result.output
    assert any(line.startswith("  FAIL  health of the other terminals at 179")
               and ": expected all ok, observed PBOD0009 silent (silent since 2026-03-02T08:29:" in line
               for line in lines), result.output
    assert "PASS  alerts.total: expected 0, observed 0" in result.output
    assert "FAILED" in result.output


def test_list_and_unknown_name() -> None:
    """`--list` names every library scenario; an unknown name exits 2 naming the known ones."""
    runner = CliRunner()
    listed = runner.invoke(cardmon, ["simulate", "scenario", "--list"])
    assert listed.exit_code == 0
    assert all(name in listed.output for name in LIBRARY)
    unknown = runner.invoke(cardmon, ["simulate", "scenario", "no-such-thing", "--check"])
    assert unknown.exit_code == 2
    assert "issuer-outage" in unknown.output


def test_follow_up_opt_in_reaches_the_registry(tmp_path: Path) -> None:
    """A scenario manager's `recovery_follow_up: true` and the runner's webhook reach the registry file the monitor reads."""
    scenario = resolve_scenario("vip-abandoned")
    fleet = scenario_fleet(scenario, webhook_base_url="http://127.0.0.1:9/")
    registry = read_registry(*write_registry(fleet, tmp_path / "registry"))
    assert registry.managers["RM001"].recovery_follow_up is True
    assert registry.managers["RM002"].recovery_follow_up is False
    assert registry.managers["RM002"].webhook_url == "http://127.0.0.1:9/RM002"


def test_follow_up_expectation_schema(tmp_path: Path) -> None:
    """A follow-up expectation naming an unknown manager or client, or a result that is no decision, is refused."""
    data = yaml.safe_load((SCENARIOS_DIR / "vip-abandoned.yaml").read_text(encoding="utf-8"))
    data["expect"]["follow_ups"] = [{"manager_id": "RM009", "count": 1},
                                    {"manager_id": "RM001", "customer_id": "C-NOPE", "count": 1}]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ScenarioError, match="expect.follow_ups: unknown manager RM009") as error:
        load_scenario(path)
    assert "expect.follow_ups: unknown VIP C-NOPE" in str(error.value)
    data["expect"]["follow_ups"] = [{"manager_id": "RM001", "count": 1, "result": "watching"}]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"expect\.follow_ups\.0\.result"):
        load_scenario(path)


def test_a_duplicate_follow_up_fails_exactly_once() -> None:
    """A follow-up received twice fails `count: 1` and names the alert it was sent twice for."""
    scenario = resolve_scenario("vip-retry-recovered")
    sent = {"schema": "cardmon.recovery.v1", "alert_id": "al-1", "result": "recovered",
            "customer_id": "C-VIP-001", "subject": "[RECOVERED] Ada Lovelace completed the cash withdrawal",
            "text": "Ada Lovelace completed the cash withdrawal at ALYS0002 (another terminal)."}
    observed = Observed(alerts=(), events={}, registry=CollectorRegistry(), start=scenario.start,
                        follow_ups={"RM001": (sent, dict(sent))})
    checks = {c.name: c for c in check(scenario.expect, observed)}
    count = checks["follow_ups[RM001 about C-VIP-001].count"]
    assert not count.passed
    assert (count.expected, count.observed) == ("1", "2 (twice or more for al-1)")
    assert checks["follow_ups[RM001 about C-VIP-001].result"].passed
    assert checks["follow_ups[RM001 about C-VIP-001].contains"].passed
    assert checks["follow_ups[RM002].count"].passed


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_check_fails_on_a_wrong_follow_up_count(kafka_bootstrap: str, tmp_path: Path) -> None:
    """`--check` exits 1 with FAIL lines when a scenario expects a follow-up for the manager who did not opt in."""
    data = yaml.safe_load((SCENARIOS_DIR / "vip-abandoned.yaml").read_text(encoding="utf-8"))
    data["expect"]["follow_ups"] = [
        {"manager_id": "RM001", "customer_id": "C-VIP-001", "count": 2, "result": "recovered"},
        {"manager_id": "RM002", "customer_id": "C-VIP-003", "count": 1, "contains": "another terminal"}]
    path = tmp_path / "wrong-follow-ups.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(cardmon, ["simulate", "scenario", str(path), "--check",
                                          "--bootstrap-servers", kafka_bootstrap,
                                          "--workdir", str(tmp_path / "work")])
    assert result.exit_code == 1, result.output
    assert "FAIL  follow_ups[RM001 about C-VIP-001].count: expected 2, observed 1" in result.output
    assert "FAIL  follow_ups[RM001 about C-VIP-001].result: expected recovered, observed abandoned" \
        in result.output
    assert "FAIL  follow_ups[RM002 about C-VIP-003].count: expected 1, observed 0" in result.output
    assert "FAIL  follow_ups[RM002 about C-VIP-003].contains: expected 'another terminal', observed no follow-up" \
        in result.output
    assert "PASS  recoveries[C-VIP-003].status: expected recovered, observed recovered" in result.output
    assert "FAILED" in result.output
