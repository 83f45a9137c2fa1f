"""The Prometheus rules in rules/prometheus/: promtool checks, promtool unit tests, conventions."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

RULES_DIR = Path(__file__).resolve().parents[2] / "rules" / "prometheus"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
TEST_FILES = sorted((RULES_DIR / "tests").glob("*.yml"))
#: level:metric:operations (https://prometheus.io/docs/practices/rules/), metric from cardmon.
RECORD_NAME = re.compile(r"^[a-z_]+:cardmon_[a-z_]+:[a-z0-9_]+$")
SEVERITIES = {"critical", "warning"}


def _rules(kind: str) -> list[dict[str, Any]]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules.extend(rule for rule in group["rules"] if kind in rule)
    return rules


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=RULES_DIR, capture_output=True, text=True, timeout=120, check=False)


def test_rule_files_exist() -> None:
    """Both the recording and the alerting rule files and their unit tests are in the repository."""
    assert {p.name for p in RULE_FILES} == {"cardmon.rules.yml", "cardmon.alerts.yml"}
    assert len(TEST_FILES) >= 3


def test_promtool_check_rules_is_clean(promtool: str) -> None:
    """promtool check rules accepts every rule file without error or lint warning."""
    result = _run(promtool, "check", "rules", *(p.name for p in RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "WARNING" not in (result.stdout + result.stderr).upper()


def test_promtool_unit_tests_pass(promtool: str) -> None:
    """Every promtool unit test in rules/prometheus/tests passes."""
    result = _run(promtool, "test", "rules", *(str(p.relative_to(RULES_DIR)) for p in TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES), result.stdout


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    """Each alerting rule has a unit-test case where it fires and one where it stays quiet."""
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in _rules("alert")}
    assert names - fired == set(), "alerts never seen firing in a unit test"
    assert names - quiet == set(), "alerts never seen staying quiet in a unit test"


def test_alerts_carry_severity_summary_description_and_runbook() -> None:
    """Every alert has a known severity and the summary, description and runbook annotations."""
    for rule in _rules("alert"):
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        if "terminal_id" in rule["expr"]:
            assert "$labels.terminal_id" in rule["annotations"]["summary"], rule["alert"]


def test_recording_rules_follow_the_naming_convention() -> None:
    """Recorded series are named level:metric:operations after a cardmon_ metric."""
    for rule in _rules("record"):
        assert RECORD_NAME.match(rule["record"]), rule["record"]


def test_no_rule_groups_by_customer_or_card_labels() -> None:
    """No rule aggregates or alerts by a customer, card, merchant or response-code label."""
    forbidden = re.compile(r"\b(customer_id|card_ref|pan|pan_masked|merchant_id|response_code)\b")
    for rule in _rules("record") + _rules("alert"):
        assert not forbidden.search(rule["expr"]), rule


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rule_files_are_plain_yaml(path: Path) -> None:
    """Each rule file is a mapping with a non-empty list of named groups."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert [group["name"] for group in document["groups"]]
    assert all(group["rules"] for group in document["groups"])
