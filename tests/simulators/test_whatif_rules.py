"""Which rule files a what-if run uses, and the offline settings it runs with."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import isolated_settings
from monitor.errors import ConfigurationError
from monitor.paths import rules_path
from simulators.whatif.rules import current_rules, proposed_rules, run_settings


def test_current_rules_are_the_settings_files_or_rules_folder(tmp_path: Path) -> None:
    """Unset paths are rules/'s files; a policy_path in the settings is used as given."""
    assert current_rules(isolated_settings()).alerting == rules_path("alerting.yaml")
    custom = tmp_path / "policy.yaml"
    settings = isolated_settings(alerting={"policy_path": custom})
    assert current_rules(settings).alerting == custom
    assert current_rules(settings).response_codes == rules_path("response_codes.yaml")


def test_proposed_rules_fall_back_file_by_file(tmp_path: Path) -> None:
    """A folder with only response_codes.yaml takes that file and the current alerting and health files."""
    (tmp_path / "response_codes.yaml").write_text("version: 1\n", encoding="utf-8")
    current = current_rules(isolated_settings())
    proposed = proposed_rules(tmp_path, current)
    assert proposed.response_codes == tmp_path / "response_codes.yaml"
    assert (proposed.alerting, proposed.health) == (current.alerting, current.health)


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_a_folder_without_rule_files_is_refused(tmp_path: Path, make: str) -> None:
    """A missing folder, or one with none of the rule files, is a ConfigurationError."""
    folder = tmp_path / "proposal"
    if make == "empty":
        folder.mkdir()
    with pytest.raises(ConfigurationError, match="proposal"):
        proposed_rules(folder, current_rules(isolated_settings()))


def test_run_settings_isolate_the_run(tmp_path: Path) -> None:
    """A run has its own SQLite store, its rule files, no sink, no API, nothing late."""
    settings = isolated_settings(alerting={"sinks": ["console"], "store_url": "postgresql://db/cardmon"})
    rules = current_rules(settings)
    store = tmp_path / "run.db"
    run = run_settings(settings, rules, store, registry=(tmp_path / "c.csv", tmp_path / "m.csv"))
    assert run.alerting.store_location() == store
    assert run.alerting.sinks == () and run.alerting.stale_after_seconds is None
    assert run.alerting.policy_path == rules.alerting and run.health.rules_path == rules.health
    assert not run.api.enabled and not run.workspace.enabled and not run.alerting.scale_out.enabled
    assert run.registry.customers_path == tmp_path / "c.csv"
