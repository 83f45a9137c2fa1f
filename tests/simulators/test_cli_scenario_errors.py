"""`cardmon simulate scenario` prints a scenario's errors as written, not as Rich markup."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from monitor.cli import app as cardmon
from simulators.scenario import SCENARIOS_DIR


def test_a_bad_scenario_name_shows_the_real_pattern(tmp_path: Path) -> None:
    """A scenario named ``Bad_Name`` exits 2 quoting the name pattern with its brackets intact."""
    data = yaml.safe_load((SCENARIOS_DIR / "atm-failing.yaml").read_text(encoding="utf-8"))
    data["name"] = "Bad_Name"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = CliRunner().invoke(cardmon, ["simulate", "scenario", str(path), "--check"])
    assert result.exit_code == 2, result.output
    text = "".join(result.output.split())  # Rich may wrap a long line
    assert "'^[a-z0-9][a-z0-9-]*$'" in text, result.output
    assert "'^*$'" not in text
