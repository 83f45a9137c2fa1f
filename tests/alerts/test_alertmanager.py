"""The Alertmanager sink against a real Prometheus Alertmanager on 127.0.0.1.

The binary comes from the Debian package ``prometheus-alertmanager``; the tests
skip without it unless ``CARDMON_REQUIRE_ALERTMANAGER=1``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.alerts.delivery.alertmanager import ALERTNAME, AlertmanagerChannel, alertmanager_alert
from monitor.alerts.delivery.channels import DeliveryError
from monitor.alerts.delivery.worker import DeliveryWorker
from monitor.alerts.messages.alert import render
from monitor.alerts.store import AlertStore, window_start_for
from monitor.domain import VipFailure

from .conftest import free_port

BINARY = "prometheus-alertmanager"
MakeFailure = Callable[..., VipFailure]
CONFIG = """\
route:
  receiver: blackhole
  group_by: [alertname, manager_id]
receivers:
  - name: blackhole
"""


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real Alertmanager (no clustering, a black-hole receiver)."""
    binary = shutil.which(BINARY) or ("/usr/bin/" + BINARY if Path("/usr/bin/" + BINARY).exists() else None)
    if binary is None:
        if os.environ.get("CARDMON_REQUIRE_ALERTMANAGER") == "1":
            pytest.fail(f"{BINARY} not found and CARDMON_REQUIRE_ALERTMANAGER=1")
        pytest.skip(f"{BINARY} not installed (Debian package 'prometheus-alertmanager')")
    work = tmp_path_factory.mktemp("alertmanager")
    (work / "alertmanager.yml").write_text(CONFIG)
    port = free_port()
    log = (work / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={work / 'alertmanager.yml'}", f"--storage.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Alertmanager did not start: {(work / 'alertmanager.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _alerts(url: str, alert_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v2/alerts",
                         params={"filter": [f'alertname="{ALERTNAME}"', f'alert_id="{alert_id}"']})
    response.raise_for_status()
    return list(response.json())


def _recorded(tmp_path: Path, make_failure: MakeFailure, sinks: tuple[str, ...] = ()) -> tuple[AlertStore, str]:
    # A client of its own per test: the module shares one Alertmanager, and the alert ID
    # derives from the client and the window.
    client = f"C-{uuid.uuid4().hex[:8]}"
    # Two failures in one grouping window an hour ago, whatever the wall clock says.
    start = window_start_for(datetime.now(UTC) - timedelta(hours=1))
    store = AlertStore(tmp_path / "alerts.db")
    store.record([
        make_failure("ev-1", start + timedelta(minutes=2), customer_id=client, terminal_id="ATM00042",
                     response_code="91", outcome="technical",
                     response_meaning="Issuer or switch inoperative"),
        make_failure("ev-2", start + timedelta(minutes=3), customer_id=client, terminal_id="ATM00077",
                     response_code="91", outcome="technical",
                     response_meaning="Issuer or switch inoperative", card_ref="4000056655665556",
                     pan_masked=None),
    ], sinks=sinks, channels=())
    (alert,) = store.list_alerts()
    return store, alert.alert_id


async def test_posted_alert_is_in_alertmanager_with_its_labels(
    tmp_path: Path, make_failure: MakeFailure, alertmanager: str
) -> None:
    """Alertmanager lists the alert with cardmon's labels and annotations, and no client data in labels."""
    store, alert_id = _recorded(tmp_path, make_failure)
    with store:
        alert = store.get_alert(alert_id)
        assert alert is not None
        message = render(alert, store.alert_events(alert_id)).for_channel("alertmanager")
    channel = AlertmanagerChannel(alertmanager, timeout=5,
                                  generator_url="https://cardmon.bank.example/alerts/{alert_id}")
    await channel.send(message)
    (posted,) = _alerts(alertmanager, alert_id)
    assert posted["labels"] == {
        "alertname": "CardmonVipFailure", "severity": "high", "tier": "private",
        "manager_id": "RM-017", "outcome": "technical", "terminal_id": "ATM00077",
        "alert_id": alert_id,
    }
    annotations = posted["annotations"]
    assert annotations["summary"].startswith("[HIGH] Ada Lovelace (private): 2 failed transactions")
    assert "400005******5556" in annotations["description"]
    assert "4000056655665556" not in str(posted)
    assert annotations["customer_id"] == alert.customer_id
    assert alert.customer_id not in str(posted["labels"])
    assert annotations["suggested_action"] == "Call the client and offer an emergency cash advance."
    assert posted["generatorURL"] == f"https://cardmon.bank.example/alerts/{alert_id}"
    assert posted["status"]["state"] == "active"
    assert datetime.fromisoformat(posted["startsAt"]) == alert.first_event_at


async def test_the_alertmanager_sink_is_delivered_by_the_worker(
    tmp_path: Path, make_failure: MakeFailure, alertmanager: str
) -> None:
    """An alert recorded with the ``alertmanager`` sink reaches Alertmanager once; its row is sent."""
    store, alert_id = _recorded(tmp_path, make_failure, sinks=("alertmanager",))
    results: list[tuple[str, str]] = []
    with store:
        worker = DeliveryWorker(store, {"alertmanager": AlertmanagerChannel(alertmanager, timeout=5)},
                                on_result=lambda channel, status, _: results.append((channel, status)))
        assert await worker.deliver_due() == 1
        assert await worker.deliver_due() == 0
        alert = store.get_alert(alert_id)
    assert alert is not None and [(d.channel, d.status) for d in alert.deliveries] == [("alertmanager", "sent")]
    assert results == [("alertmanager", "sent")]
    assert len(_alerts(alertmanager, alert_id)) == 1


async def test_hold_seconds_sets_ends_at(
    tmp_path: Path, make_failure: MakeFailure, alertmanager: str
) -> None:
    """With ``hold_seconds`` the alert ends that long after its first failure."""
    store, alert_id = _recorded(tmp_path, make_failure)
    with store:
        alert = store.get_alert(alert_id)
        assert alert is not None
        message = render(alert, store.alert_events(alert_id))
    await AlertmanagerChannel(alertmanager, hold_seconds=4 * 3600).send(message)
    (posted,) = _alerts(alertmanager, alert_id)
    ends = datetime.fromisoformat(posted["endsAt"])
    assert ends == alert.first_event_at + timedelta(hours=4)


async def test_an_unreachable_alertmanager_raises(unused_port: int, tmp_path: Path,
                                                  make_failure: MakeFailure) -> None:
    """Nothing listening is a connection error the worker retries, not a silent success."""
    store, alert_id = _recorded(tmp_path, make_failure)
    with store:
        alert = store.get_alert(alert_id)
        assert alert is not None
        message = render(alert, store.alert_events(alert_id))
    with pytest.raises(DeliveryError, match=f"Alertmanager at 127.0.0.1:{unused_port}: ConnectError"):
        await AlertmanagerChannel(f"http://127.0.0.1:{unused_port}", timeout=2).send(message)


def test_a_payload_without_events_is_refused() -> None:
    """A message whose payload lacks the facts for the labels raises DeliveryError."""
    from monitor.alerts.messages.alert import AlertMessage

    with pytest.raises(DeliveryError, match="cannot be posted to Alertmanager"):
        alertmanager_alert(AlertMessage(alert_id="al-1", subject="s", text="t", payload={}))
