"""``cardmon simulate what-if`` end to end through typer's CliRunner: hand-counted world, bad rules, TabFormer."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from monitor.cli import app
from tests.helpers import write_registry
from tests.simulators.whatif_fixtures import C1_CARD_DAY1, C1_CARD_DAY2, write_proposed, write_world

pytestmark = pytest.mark.usefixtures("clean_environment")

#: The TabFormer test's proposal: the top tier no longer alerts on the client's own
#: situation (class ``customer``: insufficient funds, bad PIN).
_PRIVATE_ALL = "alert_on: [technical, terminal, fraud, card, customer, unknown]"
_PRIVATE_NO_CUSTOMER = "alert_on: [technical, terminal, fraud, card, unknown]"
#: TabFormer ``Errors?`` reasons that are not of class ``customer`` (SOURCES.md's mapping).
_NOT_CUSTOMER = ("Technical Glitch", "Bad Expiration", "Bad Card Number", "Bad CVV")


def test_what_if_prints_the_difference_and_writes_json(tmp_path: Path) -> None:
    """The command prints the per-manager table and the alerts that disappear, and writes the same as JSON."""
    registry, recording = write_world(tmp_path)
    proposed = write_proposed(tmp_path / "proposed")
    out = tmp_path / "what-if.json"
    result = CliRunner().invoke(app, ["simulate", "what-if", "--recording", str(recording),
                                      "--rules", str(proposed), "--registry", str(registry),
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "nothing was sent" in result.output
    assert "M1       3 → 1 (-2)  3 → 1 (-2)" in result.output
    assert "Alerts that disappear (2):" in result.output
    document = json.loads(out.read_text(encoding="utf-8"))
    m1 = next(row for row in document["managers"] if row["manager_id"] == "M1")
    assert m1["difference"] == {"alerts": -2, "notifications": -2, "incident_notices": 0, "summaries": 0,
                                "digests": -1}
    assert [a["alert_id"] for a in document["alerts"]["disappeared"]] == [C1_CARD_DAY1, C1_CARD_DAY2]


@pytest.mark.parametrize(("content", "reason"), [
    ("tiers: [unclosed\n", "alerting.yaml"),
    ("grouping_window_seconds: -5\n", "alerting.yaml"),
])
def test_bad_proposed_rules_exit_2_with_one_line(tmp_path: Path, content: str, reason: str) -> None:
    """Invalid YAML or an invalid policy in --rules exits 2 with a one-line reason naming the file."""
    registry, recording = write_world(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "alerting.yaml").write_text(content, encoding="utf-8")
    result = CliRunner().invoke(app, ["simulate", "what-if", "--recording", str(recording),
                                      "--rules", str(tmp_path / "bad"), "--registry", str(registry)])
    assert result.exit_code == 2, result.output
    assert reason in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_a_rules_folder_without_rule_files_exits_2(tmp_path: Path) -> None:
    """--rules naming an empty folder exits 2 and says the folder holds no rule file."""
    registry, recording = write_world(tmp_path)
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["simulate", "what-if", "--recording", str(recording),
                                      "--rules", str(tmp_path / "empty"), "--registry", str(registry)])
    assert result.exit_code == 2
    assert "holds none of" in result.stderr


def _tabformer_expected(path: Path) -> dict[str, dict[str, int]]:
    """Alerts, notifications and digests of both policies, computed from the CSV with polars alone.

    An alert is one 600 s window (epoch-aligned, UTC) holding an alerting failure;
    it is recorded at its first alerting failure, goes out on its own (no incident,
    never 10 in an hour), and is in the digest of 08:00 Los Angeles time after it.
    """
    frame = (pl.read_csv(path, infer_schema=False)
             .filter(pl.col("Errors?").str.strip_chars().fill_null("") != "")
             .with_columns(
                 pl.datetime(pl.col("Year").cast(pl.Int32), pl.col("Month").cast(pl.Int32),
                             pl.col("Day").cast(pl.Int32),
                             pl.col("Time").str.slice(0, 2).cast(pl.Int32),
                             pl.col("Time").str.slice(3, 2).cast(pl.Int32), time_zone="UTC").alias("at"),
                 pl.any_horizontal([pl.col("Errors?").str.contains(r, literal=True)
                                    for r in _NOT_CUSTOMER]).alias("not_customer"))
             .with_columns((pl.col("at").dt.epoch("s") // 600).alias("window")))
    assert frame.height == 574

    def counts(rows: pl.DataFrame) -> dict[str, int]:
        alerts = rows.group_by("window").agg(pl.col("at").min())
        days = alerts.select((pl.col("at").dt.convert_time_zone("America/Los_Angeles")
                              - pl.duration(hours=8)).dt.date().n_unique()).item()
        return {"alerts": alerts.height, "notifications": alerts.height, "incident_notices": 0,
                "summaries": 0, "digests": days}

    return {"current": counts(frame), "proposed": counts(frame.filter(pl.col("not_customer")))}


def test_tabformer_what_if_matches_the_counts_derived_from_the_file(tmp_path: Path, tabformer_csv: Path) -> None:
    """The real TabFormer sample through rules/ and a proposal silencing ``customer`` for the top tier gives the counts polars derives."""
    registry = tmp_path / "registry"
    write_registry(registry, "customer_id,name,tier,manager_id,card_refs\nU0,User Zero,private,M-01,",
                   "manager_id,name,email,phone,webhook_url,backup_manager_id,timezone,digest_at\n"
                   "M-01,Dana Scully,dana@example.com,,,,America/Los_Angeles,08:00")
    text = (Path(__file__).resolve().parents[2] / "rules" / "alerting.yaml").read_text(encoding="utf-8")
    assert text.count(_PRIVATE_ALL) == 1
    (tmp_path / "proposed").mkdir()
    (tmp_path / "proposed" / "alerting.yaml").write_text(text.replace(_PRIVATE_ALL, _PRIVATE_NO_CUSTOMER),
                                                         encoding="utf-8")
    out = tmp_path / "what-if.json"
    result = CliRunner().invoke(app, ["simulate", "what-if", "--recording", str(tabformer_csv),
                                      "--format", "tabformer", "--rules", str(tmp_path / "proposed"),
                                      "--registry", str(registry), "--json", str(out)])
    assert result.exit_code == 0, result.output

    expected = _tabformer_expected(tabformer_csv)
    document = json.loads(out.read_text(encoding="utf-8"))
    assert [row["manager_id"] for row in document["managers"]] == ["M-01"]
    (row,) = document["managers"]
    assert row["current"] == expected["current"]
    assert row["proposed"] == expected["proposed"]
    assert (document["current"]["vip_failures"], document["proposed"]["vip_failures"]) == (574, 62)
    assert document["current"]["events"] == document["proposed"]["events"] == 19_963
    before, after = expected["current"], expected["proposed"]
    for name in ("alerts", "digests"):
        change = after[name] - before[name]
        assert f"{before[name]} → {after[name]} ({change:+d})" in result.output
    disappeared = document["alerts"]["disappeared"]
    assert len(disappeared) == before["alerts"] - after["alerts"]
    assert document["alerts"]["appeared"] == [] and document["alerts"]["changed"] == []
    assert {(a["customer_id"], a["manager_id"], a["severity"]) for a in disappeared} == {("U0", "M-01", "low")}
    assert f"Alerts that disappear ({len(disappeared)}):" in result.output


def test_a_missing_registry_exits_2(tmp_path: Path) -> None:
    """--registry naming a folder without the registry files exits 2 with one line, nothing replayed."""
    _, recording = write_world(tmp_path)
    proposed = write_proposed(tmp_path / "proposed")
    result = CliRunner().invoke(app, ["simulate", "what-if", "--recording", str(recording),
                                      "--rules", str(proposed), "--registry", str(tmp_path / "nowhere")])
    assert result.exit_code == 2, result.output
    assert "registry" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_no_registry_at_all_exits_2(tmp_path: Path) -> None:
    """Without --registry and with no registry in the settings there is nobody to alert: exit 2."""
    _, recording = write_world(tmp_path)
    proposed = write_proposed(tmp_path / "proposed")
    result = CliRunner().invoke(app, ["simulate", "what-if", "--recording", str(recording),
                                      "--rules", str(proposed)])
    assert result.exit_code == 2, result.output
    assert "no client" in result.stderr
