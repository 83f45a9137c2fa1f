"""The cardmon command line: help, alerts export, and the whole demo as a real subprocess."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from monitor.alerts.store import AlertStore
from monitor.cli import app
from monitor.domain import AlertEvent, Manager, VipFailure
from monitor.testing.broker import free_port
from tests.postgres import PostgresServer

runner = CliRunner()
CARDMON = Path(sys.executable).parent / "cardmon"

MANAGER = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example",
                  timezone="Europe/Paris")


def failure(event_id: str, occurred_at: datetime, customer_id: str, *, response_code: str | None,
            outcome: str, meaning: str, severity: str, status: str = "completed") -> VipFailure:
    """A VIP failure at an ATM in Paris, as the pipeline builds it."""
    return VipFailure(
        event=AlertEvent(
            event_id=event_id, occurred_at=occurred_at, channel="ATM", terminal_id="ATM00042",
            merchant_id="BNKPARIS0001", txn_type="withdrawal", amount_minor=20000, currency="EUR",
            response_code=response_code, outcome=outcome, response_meaning=meaning, status=status,
            card_ref="tok_9f2c1e", pan_masked="411111******1111", city="Paris", latency_ms=420.0,
        ),
        customer_id=customer_id, customer_name=f"Client {customer_id}", tier="private", manager=MANAGER,
        severity=severity,  # type: ignore[arg-type]
        suggested_action=f"Action for {outcome}.",
    )


def test_help_lists_the_commands() -> None:
    """`cardmon --help` lists run, demo, broker, simulate and alerts."""
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in ("run", "demo", "broker", "simulate", "alerts"):
        assert re.search(rf"^\W*{command}\s", result.output, re.MULTILINE), command


def test_alerts_export_prints_one_json_object_per_alert(tmp_path: Path) -> None:
    """`alerts export --format jsonl --store DB` prints each stored alert with its events, one per line."""
    store_path = tmp_path / "alerts.db"
    with AlertStore(store_path) as store:
        store.record([
            failure("sw-1", datetime(2026, 3, 2, 9, 1, tzinfo=UTC), "C-1", response_code="91",
                    outcome="technical", meaning="Issuer or switch is inoperative", severity="high"),
            failure("sw-2", datetime(2026, 3, 2, 9, 4, tzinfo=UTC), "C-1", response_code="51",
                    outcome="customer", meaning="Not sufficient funds", severity="low"),
            failure("sw-3", datetime(2026, 3, 2, 9, 30, tzinfo=UTC), "C-2", response_code=None,
                    outcome="technical", meaning="No response from issuer/switch (timeout)",
                    severity="high", status="timeout"),
        ], window_seconds=600, channels=("email",))
    result = runner.invoke(app, ["alerts", "export", "--format", "jsonl", "--store", str(store_path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    by_client = {r["customer_id"]: r for r in records}
    first, second = by_client["C-1"], by_client["C-2"]
    assert first["event_count"] == 2
    assert [e["event_id"] for e in first["events"]] == ["sw-1", "sw-2"]
    assert first["severity"] == "high"
    assert first["window_start"] == "2026-03-02T09:00:00+00:00"
    assert first["events"][0]["amount_minor"] == 20000 and first["events"][0]["currency"] == "EUR"
    assert first["events"][0]["pan_masked"] == "411111******1111"
    assert [d["channel"] for d in first["deliveries"]] == ["email"]
    assert [e["event_id"] for e in second["events"]] == ["sw-3"]
    assert second["events"][0]["status"] == "timeout" and second["events"][0]["response_code"] is None


def test_alerts_export_of_an_empty_store_prints_nothing(tmp_path: Path) -> None:
    """Exporting a store with no alert succeeds and prints no line."""
    store_path = tmp_path / "alerts.db"
    AlertStore(store_path).close()
    result = runner.invoke(app, ["alerts", "export", "--store", str(store_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""


def test_alerts_export_without_a_store_fails(tmp_path: Path) -> None:
    """Exporting from a store file that does not exist exits 1 and says where it looked."""
    missing = tmp_path / "nowhere.db"
    result = runner.invoke(app, ["alerts", "export", "--store", str(missing)])
    assert result.exit_code == 1
    assert f"no alert store at {missing}" in result.stderr
    assert not missing.exists()  # the export must not create an empty store


def test_alerts_on_postgresql_follow_the_settings_and_never_print_the_password(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`alerts list` uses alerting.store_url when set; a refused login exits 1 without printing the password."""
    url = postgres.new_store_url()
    AlertStore(url).close()
    monkeypatch.setenv("CARDMON_ALERTING__STORE_URL", url)
    listed = runner.invoke(app, ["alerts", "list"])
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.split()[:5] == ["ALERT", "STATE", "DELIVERY", "SEVERITY", "MANAGER"]
    wrong = url.replace(postgres.password, "Wr0ng-pw-1234")
    refused = runner.invoke(app, ["alerts", "list", "--store", wrong])
    assert refused.exit_code == 1
    assert refused.stderr.startswith("cannot read alert store postgresql://cardmon:***@127.0.0.1:")
    assert "password authentication failed" in refused.stderr
    assert "Wr0ng-pw-1234" not in refused.output and postgres.password not in refused.output


def _port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _demo_workspace(stderr: str, api_port: int) -> httpx.Response:
    """Sign in with the link the running demo printed; the workspace's alerts page it leads to."""
    found = re.search(rf"(http://127\.0\.0\.1:{api_port}/workspace/sign-in/\S+)", stderr)
    assert found, stderr[-2000:]
    with httpx.Client(timeout=5, follow_redirects=False) as client:
        confirm = client.get(found.group(1))
        assert confirm.status_code == 200 and "Sign in as" in confirm.text, confirm.text[-2000:]
        signed_in = client.post(found.group(1), headers={"Origin": f"http://127.0.0.1:{api_port}"})
        assert signed_in.status_code == 303, signed_in.text[-2000:]
        return client.get(f"http://127.0.0.1:{api_port}/workspace/alerts")


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_demo_runs_alerts_serves_metrics_and_stops_its_broker(tmp_path: Path) -> None:
    """`cardmon demo --duration 8` prints alerts, serves /metrics and a working workspace sign-in link while running, exits 0 and stops its broker."""
    if not CARDMON.is_file():
        pytest.skip(f"cardmon console script not installed at {CARDMON}")
    port, api_port = free_port(), free_port()
    workdir = tmp_path / "demo"
    stdout_path, stderr_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("CARDMON_")}
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [str(CARDMON), "demo", "--duration", "8", "--metrics-port", str(port), "--workdir", str(workdir),
             "--api-port", str(api_port)],
            stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=tmp_path, env=env,
        )
        try:
            scraped = ""
            deadline = time.monotonic() + 60
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                except httpx.TransportError:
                    body = ""
                if re.search(r"^cardmon_transactions_total\{.*\} [1-9]", body, re.MULTILINE):
                    scraped = body
                    break
                time.sleep(0.3)
            workspace = _demo_workspace(stderr_path.read_text(encoding="utf-8", errors="replace"), api_port)
            returncode = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    stdout = stdout_path.read_text(encoding="utf-8", errors="replace")
    stderr = stderr_path.read_text(encoding="utf-8", errors="replace")
    assert returncode == 0, stderr[-3000:]
    assert scraped, f"/metrics never showed cardmon_transactions_total > 0\n{stderr[-2000:]}"
    assert workspace.status_code == 200 and "Sign out" in workspace.text, workspace.text[-2000:]
    assert 'outcome="approved"' in scraped

    # At least one alert reached the console sink: "[HIGH] <client> (<tier>): ..."
    assert re.search(r"\[(HIGH|MEDIUM|LOW)\] .+ \((private|platinum|gold)\)", stdout), stdout[-3000:]
    finished = re.search(r"(\d+) VIP alerts stored", stderr)
    assert finished and int(finished.group(1)) >= 1, stderr[-2000:]
    jsonl = (workdir / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    assert jsonl, "the jsonl sink wrote nothing"

    # The demo's own broker is gone, and so is /metrics.
    broker = re.search(r"broker 127\.0\.0\.1:(\d+)", stderr)
    assert broker, stderr[-2000:]
    broker_port = int(broker.group(1))
    assert not _port_open(broker_port)
    assert subprocess.run(["pgrep", "-f", f"tcp://127.0.0.1:{broker_port}"],
                          capture_output=True, check=False).returncode == 1
    assert not _port_open(port)

    # The demo's managers are reachable: their webhooks accepted messages, none is unreachable.
    delivered = re.search(r"(\d+) messages delivered to the\s+managers'\s+webhooks", stderr)
    assert delivered and int(delivered.group(1)) >= 1, stderr[-2000:]
    assert "delivered to " in stderr and "webhook" in stderr
    assert "cannot reach" not in stderr, stderr[-2000:]

    # What the demo stored can be exported by the CLI; a person's channel made some notified.
    result = runner.invoke(app, ["alerts", "export", "--store", str(workdir / "alerts.db")])
    assert result.exit_code == 0, result.output
    exported = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(exported) == int(finished.group(1))
    assert any(alert["state"] == "notified" for alert in exported), [a["state"] for a in exported]


def test_alerts_export_of_a_file_that_is_not_a_store_fails(tmp_path: Path) -> None:
    """Exporting from a file that is not an SQLite alert store exits 1 with a reason, no traceback."""
    junk = tmp_path / "alerts.db"
    junk.write_bytes(b"this is not a database, just text\n" * 10)
    result = runner.invoke(app, ["alerts", "export", "--store", str(junk)])
    assert result.exit_code == 1
    assert f"cannot read alert store {junk}" in result.stderr
    assert "Traceback" not in result.output


def test_alerts_export_uses_the_store_of_the_config_file(tmp_path: Path) -> None:
    """Without --store, the export reads the store named by --config's alerting.store_path."""
    store_path = tmp_path / "configured.db"
    with AlertStore(store_path) as store:
        store.record([failure("sw-9", datetime(2026, 3, 2, 9, 1, tzinfo=UTC), "C-9", response_code="96",
                              outcome="technical", meaning="System malfunction", severity="high")])
    config = tmp_path / "cardmon.yaml"
    config.write_text(f"alerting: {{store_path: {store_path}}}\n", encoding="utf-8")
    result = runner.invoke(app, ["alerts", "export", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["customer_id"] for line in result.stdout.splitlines()] == ["C-9"]


@pytest.mark.parametrize(
    ("text", "message"),
    [(None, "config file not found"), ("kafka: {bootstrap_server: typo}\n", "kafka.bootstrap_server")],
    ids=["missing-file", "unknown-key"],
)
def test_bad_config_exits_2_with_a_reason(tmp_path: Path, text: str | None, message: str) -> None:
    """A missing or invalid --config exits 2 with the reason on stderr, not a traceback."""
    config = tmp_path / "cardmon.yaml"
    if text is not None:
        config.write_text(text, encoding="utf-8")
    for command in (["alerts", "export", "--config", str(config)], ["run", "--config", str(config)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert message in result.stderr
        assert "Traceback" not in result.output


def test_broker_command_stops_its_broker_on_sigterm() -> None:
    """`cardmon broker` stopped by SIGTERM (as systemd or a container stop does) takes Tansu down with it."""
    port = free_port()
    process = subprocess.Popen([str(CARDMON), "broker", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not _port_open(port):
            assert time.monotonic() < deadline, "the broker never listened"
            time.sleep(0.1)
        process.terminate()
        assert process.wait(timeout=15) == 0
        deadline = time.monotonic() + 10
        while _port_open(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _port_open(port), "Tansu outlived `cardmon broker`"
    finally:
        if process.poll() is None:
            process.kill()


def test_run_with_a_missing_registry_says_so_in_one_line(tmp_path: Path) -> None:
    """A start-up problem an operator can fix is one clear line and exit 1, not a traceback."""
    config = tmp_path / "cardmon.yaml"
    config.write_text(
        "registry:\n"
        f"  customers_path: {tmp_path / 'nope' / 'customers.csv'}\n"
        f"  managers_path: {tmp_path / 'nope' / 'managers.csv'}\n"
        f"alerting:\n  store_path: {tmp_path / 'alerts.db'}\n"
        f"metrics:\n  port: {free_port()}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDMON_")}
    result = subprocess.run([str(CARDMON), "run", "--config", str(config)], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "registry file not found" in result.stderr and "customers.csv" in result.stderr


def test_unknown_sink_names_are_refused(tmp_path: Path) -> None:
    """A misspelt sink (`jsonll`) is a settings error, not alerts silently going nowhere."""
    config = tmp_path / "cardmon.yaml"
    config.write_text("alerting:\n  sinks: [jsonll]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDMON_")}
    result = subprocess.run([str(CARDMON), "run", "--config", str(config)], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert "jsonll" in result.stderr


def test_dashboards_build_check_finds_the_committed_json_current() -> None:
    """`cardmon dashboards build --check` exits 0: the committed JSON is what the source builds."""
    result = runner.invoke(app, ["dashboards", "build", "--check"])
    assert result.exit_code == 0, result.output


def test_dashboards_push_without_a_token_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pushing without $GRAFANA_TOKEN exits 2 and names the variable, before any network call."""
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    monkeypatch.delenv("GRAFANA_API_KEY", raising=False)
    result = runner.invoke(app, ["dashboards", "push", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "GRAFANA_TOKEN" in result.output


def test_run_with_a_bad_terminal_registry_says_so_in_one_line(tmp_path: Path) -> None:
    """Opening hours that do not parse stop the start with one line naming the problem."""
    terminals = tmp_path / "terminals.csv"
    terminals.write_text("terminal_id,timezone,opening_hours\nPOS00001,Europe/Paris,Mo-Fr 25:00-18:00\n")
    config = tmp_path / "cardmon.yaml"
    config.write_text(f"health:\n  terminals_path: {terminals}\n"
                      f"alerting:\n  store_path: {tmp_path / 'alerts.db'}\n"
                      f"metrics:\n  port: {free_port()}\napi:\n  port: {free_port()}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDMON_")}
    result = subprocess.run([str(CARDMON), "run", "--config", str(config)], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "25:00" in result.stderr


def test_store_commands_refuse_a_file_that_is_not_a_cardmon_store_and_leave_it_alone(tmp_path: Path) -> None:
    """An empty file or another application's SQLite database is refused in one line and not written to."""
    import sqlite3

    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE ledger (entry TEXT)")
    before = {path: path.read_bytes() for path in (empty, other)}
    for path in (empty, other):
        for command in (["incidents", "list"], ["alerts", "list"], ["alerts", "export"]):
            result = runner.invoke(app, [*command, "--store", str(path)])
            assert result.exit_code == 1, result.output
            assert result.stderr.strip() == (f"cannot read alert store {path}: "
                                             "not a cardmon alert store (no cardmon schema in it)")
    assert {path: path.read_bytes() for path in (empty, other)} == before


@pytest.mark.parametrize("section, value, message", [
    ("incidents", {"scopes": {"network": {"min_failures": -10}}},
     "incidents.scopes.network.min_failures: Input should be greater than or equal to 1"),
    ("incidents", {"outcome_classes": ["technicl"]}, "outcome_classes: 'technicl' is not a failure class"),
    ("rate_limit", {"max_messages": 0}, "rate_limit.max_messages: Input should be greater than or equal to 1"),
])
def test_a_bad_storm_control_section_stops_run_in_one_line(tmp_path: Path, section: str,
                                                           value: dict[str, object], message: str) -> None:
    """A wrong incidents: or rate_limit: section in the alert policy exits 1 with the field, not a traceback."""
    import yaml

    from monitor.paths import rules_path

    policy = yaml.safe_load(rules_path("alerting.yaml").read_text(encoding="utf-8"))
    policy[section] = value
    (tmp_path / "alerting.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")
    config = tmp_path / "cardmon.yaml"
    config.write_text(f"alerting:\n  policy_path: {tmp_path / 'alerting.yaml'}\n", encoding="utf-8")
    result = runner.invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_mistyped_store_url_is_refused_without_printing_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cardmon run` with a store_url that is not postgresql:// exits 2 in one line that never quotes the URL."""
    for name in [n for n in os.environ if n.startswith("CARDMON_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CARDMON_ALERTING__STORE_URL", "postgresq://cm:S3cretTypo@db/c")
    config = tmp_path / "cardmon.yaml"
    config.write_text("alerting:\n  sinks: [jsonl]\n", encoding="utf-8")
    result = runner.invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "S3cret" not in result.output and "postgresq://" not in result.output
    assert result.stderr.strip() == (
        "cardmon: invalid settings: alerting: Value error, alerting.store_url must be a postgresql:// URL")
