"""Rule files: read once at start, strictly (a key written twice is refused), each section by its own model."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.alerts.lifecycle import EscalationPolicy, EscalationRulesError
from monitor.alerts.ratelimit import RateLimit, RateLimitError
from monitor.app import MonitorApp
from monitor.config import Settings
from monitor.errors import ConfigurationError
from monitor.health.silent import SilentRules
from monitor.health.state import HealthRules
from monitor.incidents import IncidentRules, IncidentRulesError
from monitor.paths import rules_path
from monitor.pipeline.selection import AlertPolicy, PolicyError
from monitor.rulebook import RuleFile, RuleFileError

pytestmark = pytest.mark.usefixtures("clean_environment")  # tests/conftest.py


def _write(tmp_path: Path, text: str, name: str = "alerting.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_duplicate_key_is_refused_naming_file_line_and_key(tmp_path: Path) -> None:
    """A top-level key written twice is refused in one line naming the file, both lines and the key."""
    path = _write(tmp_path, "tiers:\n  gold: {alert_on: [technical]}\n"
                            "grouping_window_seconds: 600\n"
                            "tiers:\n  gold: {alert_on: [card]}\n")
    with pytest.raises(RuleFileError) as caught:
        RuleFile.read(path)
    message = str(caught.value)
    assert message == f"cannot read {path}: line 4: duplicate key 'tiers' (first on line 1)"
    assert "\n" not in message
    assert caught.value.path == path
    assert isinstance(caught.value, ConfigurationError)  # exit code 2 from the CLI


def test_a_nested_duplicate_key_is_refused_by_every_concern(tmp_path: Path) -> None:
    """A key repeated inside a section is refused whichever concern reads the file, in its own error type."""
    path = _write(tmp_path, "tiers: {gold: {alert_on: [technical]}}\n"
                            "incidents:\n  window_seconds: 120\n  window_seconds: 60\n")
    expected = "line 4: duplicate key 'window_seconds' (first on line 3)"
    for load, error in ((AlertPolicy.load, PolicyError), (IncidentRules.load, IncidentRulesError),
                        (RateLimit.load, RateLimitError), (EscalationPolicy.load, EscalationRulesError)):
        with pytest.raises(error) as caught:
            load(path)
        assert str(path) in str(caught.value) and expected in str(caught.value)


def test_a_health_rules_duplicate_is_refused(tmp_path: Path) -> None:
    """rules/health.yaml is as strict: a repeated key in ``silent`` is refused naming line and key."""
    path = _write(tmp_path, "silent:\n  drop_ratio: 0.2\n  drop_ratio: 0.3\n", "health.yaml")
    with pytest.raises(ValueError, match=r"cannot read health rules .*health\.yaml: line 3: "
                                         r"duplicate key 'drop_ratio' \(first on line 2\)"):
        SilentRules.load(path)


def test_a_yaml_syntax_error_is_one_line_with_its_position(tmp_path: Path) -> None:
    """Broken YAML gives one line with the line and column of the problem."""
    path = _write(tmp_path, "tiers: {gold: {alert_on: [technical]}\n")
    with pytest.raises(RuleFileError) as caught:
        RuleFile.read(path)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"cannot read {path}: line 2, column 1: ")


def test_a_merge_key_may_be_overridden(tmp_path: Path) -> None:
    """A key given explicitly beside ``<<: *anchor`` overrides the merged one; that is no duplicate."""
    path = _write(tmp_path, "base: &base {min_failures: 5, min_cards: 2}\n"
                            "scope: {<<: *base, min_failures: 9}\n")
    assert RuleFile.read(path).section("scope") == {"min_failures": 9, "min_cards": 2}


def test_a_section_error_names_the_field(tmp_path: Path) -> None:
    """A section validated by its pydantic model names the section, the field path and the reason."""
    path = _write(tmp_path, "incidents:\n  scopes:\n    network: {min_failures: 0}\n")
    with pytest.raises(IncidentRulesError) as caught:
        IncidentRules.from_rules(RuleFile.read(path))
    assert str(caught.value).startswith(f"{path}: incidents.scopes.network.min_failures: ")
    with pytest.raises(RateLimitError, match=r"rate_limit\.per_seconds: "):
        RateLimit.from_rules(RuleFile.read(_write(tmp_path, "rate_limit: {per_seconds: 0}\n")))


def test_an_absent_section_is_none_and_a_present_one_is_frozen(tmp_path: Path) -> None:
    """A file without the section turns the feature off; a section read is a frozen model."""
    rules = RuleFile.read(_write(tmp_path, "rate_limit: {max_messages: 3}\n"))
    assert IncidentRules.from_rules(rules) is None
    limit = RateLimit.from_rules(rules)
    assert limit is not None and limit.max_messages == 3
    with pytest.raises(ValueError, match="frozen"):
        limit.max_messages = 4  # type: ignore[misc]


def test_the_shipped_files_build_every_concern_from_one_read() -> None:
    """The shipped rule files, each read once, give every concern its section."""
    alerting = RuleFile.read(rules_path("alerting.yaml"))
    assert AlertPolicy.from_rules(alerting).tiers
    assert EscalationPolicy.from_rules(alerting) == EscalationPolicy.load(rules_path("alerting.yaml"))
    assert IncidentRules.from_rules(alerting) == IncidentRules.load(rules_path("alerting.yaml"))
    assert RateLimit.from_rules(alerting) == RateLimit.load(rules_path("alerting.yaml"))
    health = RuleFile.read(rules_path("health.yaml"))
    assert SilentRules.from_rules(health) == SilentRules.load(rules_path("health.yaml"))
    assert HealthRules.from_rules(health) == HealthRules.load(rules_path("health.yaml"))


def test_each_rule_file_is_read_once_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the app opens alerting.yaml, response_codes.yaml and health.yaml exactly once each."""
    reads: Counter[str] = Counter()
    read_text = Path.read_text

    def counting(self: Path, *args: object, **kwargs: object) -> str:
        if self.suffix == ".yaml":
            reads[self.name] += 1
        return read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", counting)
    monitor = MonitorApp(Settings(alerting={"store_path": tmp_path / "alerts.db"}),
                         metrics_registry=CollectorRegistry())
    try:
        assert reads == {"alerting.yaml": 1, "response_codes.yaml": 1, "health.yaml": 1}
        assert monitor.incident_rules is not None and monitor.rate_limit is not None
    finally:
        monitor.store.close()
