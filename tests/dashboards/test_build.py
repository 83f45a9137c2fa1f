"""The committed dashboard JSON is what the Python source builds, and refers to the provisioned datasource."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from dashboards.build import DASHBOARDS, JSON_DIR, main, rendered, stale, write
from dashboards.common import DATASOURCE_UID

REPO_ROOT = Path(__file__).resolve().parents[2]
PROVISIONING = REPO_ROOT / "dashboards" / "provisioning"


def _committed() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(JSON_DIR.glob("*.json"))}


def test_regenerated_json_equals_committed_byte_for_byte() -> None:
    """Building the dashboards from source gives exactly the bytes committed in dashboards/json/."""
    documents = rendered()
    assert sorted(documents) == sorted(path.name for path in JSON_DIR.glob("*.json"))
    for name, text in documents.items():
        assert (JSON_DIR / name).read_bytes() == text.encode("utf-8"), (
            f"{name} is stale: run python -m dashboards.build")
    assert stale() == []


def test_module_command_regenerates_into_a_folder(tmp_path: Path) -> None:
    """`python -m dashboards.build --out DIR` writes the same bytes as are committed."""
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "dashboards.build", "--out", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for path in JSON_DIR.glob("*.json"):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes()


def test_check_reports_a_hand_edited_and_an_extra_file(tmp_path: Path) -> None:
    """--check exits 1 naming a hand-edited file and a file no source builds, and 0 once rewritten."""
    write(tmp_path)
    edited = tmp_path / "cardmon-pipeline.json"
    edited.write_text(edited.read_text(encoding="utf-8").replace("Pipeline", "Pipe"), encoding="utf-8")
    (tmp_path / "old-dashboard.json").write_text("{}", encoding="utf-8")
    assert stale(tmp_path) == ["cardmon-pipeline.json", "old-dashboard.json"]
    assert main(["--check", "--out", str(tmp_path)]) == 1
    write(tmp_path)
    assert not (tmp_path / "old-dashboard.json").exists()
    assert main(["--check", "--out", str(tmp_path)]) == 0


def test_three_dashboards_with_stable_uids_named_after_their_files() -> None:
    """Fleet health, VIP experience and Pipeline exist under fixed UIDs, one file each named <uid>.json."""
    committed = _committed()
    assert {name: doc["uid"] for name, doc in committed.items()} == {
        "cardmon-fleet-health.json": "cardmon-fleet-health",
        "cardmon-vip-experience.json": "cardmon-vip-experience",
        "cardmon-pipeline.json": "cardmon-pipeline",
    }
    assert list(DASHBOARDS) == ["cardmon-fleet-health", "cardmon-vip-experience", "cardmon-pipeline"]
    assert {doc["title"] for doc in committed.values()} == {
        "cardmon / Fleet health", "cardmon / VIP experience", "cardmon / Pipeline"}


def test_every_panel_and_query_uses_the_fixed_datasource_uid() -> None:
    """Each non-row panel and each of its targets points at the Prometheus datasource UID, and has a PromQL expression."""
    for name, doc in _committed().items():
        panels = [p for p in doc["panels"] if p["type"] != "row"]
        assert panels, name
        for panel in panels:
            assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, panel["title"]
            assert panel["targets"], panel["title"]
            assert panel["description"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}
                assert target["expr"].strip() and target["refId"]
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(set(ref_ids)) == len(ref_ids), panel["title"]
        for variable in doc["templating"]["list"]:
            if variable["type"] == "query":
                assert variable["datasource"]["uid"] == DATASOURCE_UID


def test_panel_ids_unique_and_titles_unique_per_dashboard() -> None:
    """Grafana needs panel IDs unique within a dashboard; titles are unique too so a report can name a panel."""
    for name, doc in _committed().items():
        ids = [p["id"] for p in doc["panels"]]
        assert ids == list(range(1, len(ids) + 1)), name
        titles = [p["title"] for p in doc["panels"] if p["type"] != "row"]
        assert len(set(titles)) == len(titles), name


def test_provisioning_gives_the_datasource_its_fixed_uid_and_loads_the_json_folder() -> None:
    """The datasource provisioning file declares the UID the panels use; the provider is a file provider into folder cardmon."""
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "cardmon.yaml").read_text(encoding="utf-8"))
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert (source["uid"], source["type"]) == (DATASOURCE_UID, "prometheus")
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "cardmon.yaml").read_text(encoding="utf-8"))
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["folder"] == "cardmon"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/cardmon"
