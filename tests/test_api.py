"""The alert HTTP API, served on 127.0.0.1 and called over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from monitor.alerts.delivery.links import AckLinks
from monitor.alerts.store import AlertStore
from monitor.api import build_api, start_api
from monitor.domain import AlertEvent, Manager, VipFailure

API_TOKEN = "api-token-for-tests-0123456789"
SECRET = "link-secret-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
T0 = datetime(2024, 5, 6, 12, 1, 30, tzinfo=UTC)
CLAIRE = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example",
                 timezone="Europe/Paris")
JONAS = Manager(manager_id="RM-042", name="Jonas Weber", email="jonas.weber@bank.example")
RAW_PAN = "4111111111111111"


class Clock:
    """A settable clock for the link signer."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def _failure(number: int, manager: Manager = CLAIRE, minutes: int = 0) -> VipFailure:
    event = AlertEvent(
        event_id=f"ev-{number}", occurred_at=T0 + timedelta(minutes=minutes), channel="ATM",
        terminal_id="ATM00042", merchant_id="BNKPARIS0001", txn_type="withdrawal",
        amount_minor=13409, currency="EUR", response_code="91", outcome="technical",
        response_meaning="Issuer or switch is inoperative",
        pan_masked=RAW_PAN, card_ref=RAW_PAN,  # a PAN that slipped in: the store masks it
    )
    return VipFailure(event=event, customer_id=f"C-{number:04d}", customer_name=f"Client {number}",
                      tier="private", manager=manager, severity="high",
                      suggested_action="Call the client to apologise.")


class Api:
    """The API under test: its base URL, client, store and link maker."""

    def __init__(self, url: str, client: httpx.AsyncClient, store: AlertStore, links: AckLinks,
                 clock: Clock) -> None:
        self.url, self.client, self.store, self.links, self.clock = url, client, store, links, clock

    def record(self, *failures: VipFailure, at: datetime | None = None) -> list[str]:
        return list(self.store.record(list(failures), now=at).new_alert_ids)

    def link_path(self, alert_id: str, manager_id: str = "RM-017") -> str:
        parts = urlsplit(self.links.url(alert_id, manager_id))
        return f"{parts.path}?{parts.query}"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """The API on a free port of 127.0.0.1 over a fresh store, with a bearer token and ack links."""
    clock = Clock()
    links = AckLinks(SECRET, "https://cardmon.bank.example", clock=clock)
    with AlertStore(tmp_path / "alerts.db") as store:
        server = await start_api(build_api(store, api_token=API_TOKEN, links=links))
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                yield Api(server.url, client, store, links, clock)
        finally:
            await server.close()


async def test_the_json_api_needs_the_bearer_token(api: Api) -> None:
    """Without the bearer token, or with a wrong one, every JSON endpoint answers 401 and changes nothing."""
    [alert_id] = api.record(_failure(1))
    attempts = [("GET", "/alerts", None), ("GET", f"/alerts/{alert_id}", None),
                ("POST", f"/alerts/{alert_id}/ack", {"by": "x"}),
                ("POST", f"/alerts/{alert_id}/resolve", {"by": "x", "note": "y"})]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_TOKEN}"}):
        for method, path, body in attempts:
            response = await api.client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"] == "unauthorized"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert api.store.state_of(alert_id) == "open"


async def test_an_api_without_a_configured_token_refuses_json_callers(tmp_path: Path) -> None:
    """With no API token configured, the JSON endpoints answer 403 api_disabled even to a bearer."""
    with AlertStore(tmp_path / "alerts.db") as store:
        server = await start_api(build_api(store))
        try:
            async with httpx.AsyncClient(base_url=server.url) as client:
                response = await client.get("/alerts", headers=AUTH)
        finally:
            await server.close()
    assert (response.status_code, response.json()["error"]) == (403, "api_disabled")


async def test_list_filters_by_state_manager_and_time_and_pages_newest_first(api: Api) -> None:
    """GET /alerts filters on state, manager_id and since, and its cursor walks every alert once, newest first."""
    ids = [api.record(_failure(n, CLAIRE if n % 2 else JONAS), at=T0 + timedelta(minutes=n))[0]
           for n in range(1, 6)]
    api.store.acknowledge(ids[0], by="RM-017", via="api")

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await api.client.get("/alerts", params=params, headers=AUTH)).json()
        assert len(page["alerts"]) <= 2
        seen += [a["alert_id"] for a in page["alerts"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]

    async def listed(**params: Any) -> list[str]:
        response = await api.client.get("/alerts", params=params, headers=AUTH)
        assert response.status_code == 200
        return [a["alert_id"] for a in response.json()["alerts"]]

    assert await listed(state="acknowledged") == [ids[0]]
    assert await listed(state="open") == [ids[4], ids[3], ids[2], ids[1]]
    assert await listed(manager_id="RM-042") == [ids[3], ids[1]]
    assert await listed(since=(T0 + timedelta(minutes=4)).isoformat()) == [ids[4], ids[3]]
    first = (await api.client.get("/alerts", params={"limit": 1}, headers=AUTH)).json()["alerts"][0]
    assert (first["state"], first["manager_id"], first["severity"]) == ("open", "RM-017", "high")
    assert "events" not in first and first["deliveries"][0]["channel"] == "email"


@pytest.mark.parametrize("params", [{"state": "closed"}, {"since": "2024-05-06T12:00:00"},
                                    {"since": "yesterday"}, {"limit": "0"}, {"limit": "many"},
                                    {"cursor": "not-a-cursor"}, {"late": "perhaps"},
                                    {"unroutable": "2"}])
async def test_bad_list_parameters_answer_400(api: Api, params: dict[str, str]) -> None:
    """An unknown state, a time without offset, a bad limit, a forged cursor or a flag that is not true/false is a 400 with a message."""
    response = await api.client.get("/alerts", params=params, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request" and response.json()["message"]


async def test_one_alert_comes_with_events_deliveries_and_history_and_no_raw_pan(api: Api) -> None:
    """GET /alerts/{id} returns state, events, deliveries and history; a PAN given to the store never comes back."""
    [alert_id] = api.record(_failure(1))
    api.store.acknowledge(alert_id, by="RM-017", via="cli", note=f"card {RAW_PAN} checked")
    response = await api.client.get(f"/alerts/{alert_id}", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert (body["alert_id"], body["state"], body["event_count"]) == (alert_id, "acknowledged", 1)
    assert [e["event_id"] for e in body["events"]] == ["ev-1"]
    assert [(d["channel"], d["status"], d["recipient_id"]) for d in body["deliveries"]] == [
        ("email", "pending", None)]
    assert [(h["action"], h["by"], h["via"]) for h in body["history"]] == [
        ("opened", "cardmon", "pipeline"), ("acknowledged", "RM-017", "cli")]
    assert RAW_PAN not in response.text
    assert body["events"][0]["pan_masked"].startswith("411111")


async def test_an_unknown_alert_is_a_404_everywhere(api: Api) -> None:
    """Reading, acknowledging or resolving an unknown alert answers 404 not_found."""
    for method, path, body in [("GET", "/alerts/al-nope", None),
                               ("POST", "/alerts/al-nope/ack", {"by": "RM-017"}),
                               ("POST", "/alerts/al-nope/resolve", {"by": "RM-017", "note": "x"})]:
        response = await api.client.request(method, path, json=body, headers=AUTH)
        assert (response.status_code, response.json()["error"]) == (404, "not_found")


async def test_ack_through_the_api_is_idempotent(api: Api) -> None:
    """POST ack twice: the first acknowledges (changed), the second changes nothing; history has one ack."""
    [alert_id] = api.record(_failure(1))
    first = await api.client.post(f"/alerts/{alert_id}/ack", headers=AUTH,
                                  json={"by": "Ops Desk", "note": "on it"})
    assert first.status_code == 200
    assert first.json()["changed"] is True and first.json()["state"] == "acknowledged"
    assert (first.json()["entry"]["by"], first.json()["entry"]["via"]) == ("Ops Desk", "api")
    second = await api.client.post(f"/alerts/{alert_id}/ack", headers=AUTH, json={"by": "Someone"})
    assert (second.status_code, second.json()["changed"], second.json()["entry"]) == (200, False, None)
    assert [h.action for h in api.store.history(alert_id)] == ["opened", "acknowledged"]


async def test_resolve_needs_an_acknowledgement_and_a_note(api: Api) -> None:
    """Resolve before ack is 409 (state unchanged), without a note 400; after ack it resolves once."""
    [alert_id] = api.record(_failure(1))
    early = await api.client.post(f"/alerts/{alert_id}/resolve", headers=AUTH,
                                  json={"by": "RM-017", "note": "fixed"})
    assert (early.status_code, early.json()["error"]) == (409, "conflict")
    assert api.store.state_of(alert_id) == "open"
    await api.client.post(f"/alerts/{alert_id}/ack", headers=AUTH, json={"by": "RM-017"})
    no_note = await api.client.post(f"/alerts/{alert_id}/resolve", headers=AUTH, json={"by": "RM-017"})
    assert no_note.status_code == 400
    done = await api.client.post(f"/alerts/{alert_id}/resolve", headers=AUTH,
                                 json={"by": "RM-017", "note": "client paid by transfer"})
    assert (done.status_code, done.json()["state"], done.json()["changed"]) == (200, "resolved", True)
    again = await api.client.post(f"/alerts/{alert_id}/resolve", headers=AUTH,
                                  json={"by": "RM-017", "note": "again"})
    assert (again.status_code, again.json()["changed"]) == (200, False)
    assert api.store.history(alert_id)[-1].note == "client paid by transfer"


async def test_resolve_takes_an_outcome_from_the_vocabulary(api: Api) -> None:
    """An unknown or non-string outcome is 400; a known one resolves (without a note) and is in the entry."""
    [alert_id] = api.record(_failure(1))
    await api.client.post(f"/alerts/{alert_id}/ack", headers=AUTH, json={"by": "RM-017"})
    for outcome in ("fixed_it", 7):
        bad = await api.client.post(f"/alerts/{alert_id}/resolve", headers=AUTH,
                                    json={"by": "RM-017", "outcome": outcome})
        assert bad.status_code == 400
    assert api.store.state_of(alert_id) == "acknowledged"
    done = await api.client.post(f"/alerts/{alert_id}/resolve", headers=AUTH,
                                 json={"by": "RM-017", "outcome": "card_replaced"})
    assert done.status_code == 200 and done.json()["entry"]["outcome"] == "card_replaced"
    assert api.store.history(alert_id)[-1].outcome == "card_replaced"


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"by": 17}', b'{"note": "who?"}'])
async def test_a_bad_ack_body_is_a_400(api: Api, body: bytes) -> None:
    """Malformed JSON, a non-object, a non-string 'by' or a missing 'by' is refused with 400."""
    [alert_id] = api.record(_failure(1))
    response = await api.client.post(f"/alerts/{alert_id}/ack", content=body,
                                      headers=AUTH | {"Content-Type": "application/json"})
    assert response.status_code == 400
    assert api.store.state_of(alert_id) == "open"


async def test_the_link_page_shows_without_acknowledging_and_its_form_acknowledges(api: Api) -> None:
    """GET on the ack link (what a mail scanner does) changes nothing; POSTing its form acknowledges as the link's manager."""
    [alert_id] = api.record(_failure(1))
    path = api.link_path(alert_id)
    for _ in range(3):  # prefetches
        page = await api.client.get(path)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
    assert api.store.state_of(alert_id) == "open"
    assert "Acknowledge as RM-017" in page.text and "Client 1" in page.text
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    action = page.text.split('action="')[1].split('"')[0].replace("&amp;", "&")
    assert urlsplit(action).path == f"/alerts/{alert_id}/ack"

    confirmed = await api.client.post(action, data={"note": "calling her now"})
    assert confirmed.status_code == 200 and "is acknowledged by RM-017" in confirmed.text
    entry = api.store.history(alert_id)[-1]
    assert (entry.action, entry.actor, entry.via, entry.note) == (
        "acknowledged", "RM-017", "link", "calling her now")
    again = await api.client.post(action)
    assert again.status_code == 200 and "already acknowledged" in again.text
    shown = await api.client.get(path)
    assert "already acknowledged by RM-017" in shown.text
    assert [h.action for h in api.store.history(alert_id)].count("acknowledged") == 1


async def test_tampered_expired_or_foreign_link_tokens_are_refused_with_403(api: Api) -> None:
    """A tampered, expired or other alert's token gets a clear 403 on GET and POST, and no state change."""
    first, second = api.record(_failure(1), _failure(2))
    token = parse_qs(urlsplit(api.links.url(first, "RM-017")).query)["token"][0]
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    cases = {
        "not valid": f"/alerts/{first}/ack?token={tampered}",
        "for another alert": f"/alerts/{second}/ack?token={token}",
    }
    for reason, path in cases.items():
        for method in ("GET", "POST"):
            response = await api.client.request(method, path)
            assert response.status_code == 403, (reason, method)
            assert reason in response.text and "Nothing was changed" in response.text
    api.clock.now += timedelta(hours=49)
    expired = await api.client.post(f"/alerts/{first}/ack?token={token}")
    assert expired.status_code == 403 and "expired" in expired.text
    assert api.store.state_of(first) == api.store.state_of(second) == "open"
    assert [h.action for h in api.store.history(first)] == ["opened"]


async def test_incidents_are_listed_and_read_with_their_alerts(api: Api) -> None:
    """GET /incidents lists storm-control incidents (open ones on request) and GET /incidents/{id} names their VIP alerts."""
    from dataclasses import replace as _replace

    from monitor.incidents import IncidentChange, IncidentRules

    rules = IncidentRules.model_validate({"scopes": {"terminal": {"min_failures": 5}}})
    change = IncidentChange(kind="opened", incident_id="in-apitest", scope="terminal",
                            scope_key="ATM00042", started_at=T0, last_failure_at=T0, failures=9,
                            cards=7, terminals=1)
    failures = [_replace(_failure(n), incident_id="in-apitest") for n in (1, 2)]
    api.store.record(failures, incidents=[change], incident_rules=rules)
    listed = await api.client.get("/incidents", params={"open": "true"}, headers=AUTH)
    assert listed.status_code == 200
    [incident] = listed.json()["incidents"]
    assert incident["incident_id"] == "in-apitest" and incident["open"] is True
    assert (incident["scope"], incident["scope_key"], incident["alert_count"]) == ("terminal", "ATM00042", 2)
    one = await api.client.get("/incidents/in-apitest", headers=AUTH)
    assert sorted(a["customer_id"] for a in one.json()["alerts"]) == ["C-0001", "C-0002"]
    alert_id = one.json()["alerts"][0]["alert_id"]
    assert (await api.client.get(f"/alerts/{alert_id}", headers=AUTH)).json()["incident_id"] == "in-apitest"
    assert (await api.client.get("/incidents/in-nope", headers=AUTH)).status_code == 404
    assert (await api.client.get("/incidents")).status_code == 401
    assert (await api.client.get("/incidents", params={"limit": "0"}, headers=AUTH)).status_code == 400


async def test_late_and_unroutable_alerts_are_fields_and_filters(api: Api) -> None:
    """A failure a week old when processed is listed with late=true and found by ?late=true; ?unroutable=true finds the alert no channel reaches."""
    processed = T0 + timedelta(days=7)
    [late] = list(api.store.record([_failure(1)], now=processed, stale_after_seconds=1800).late_alert_ids)
    [fresh] = api.record(_failure(2, minutes=1), at=T0 + timedelta(minutes=2))
    nobody = Manager(manager_id="RM-077", name="No Contact")
    [lost] = api.record(_failure(3, nobody), at=T0 + timedelta(minutes=3))

    async def listed(**params: Any) -> list[dict[str, Any]]:
        response = await api.client.get("/alerts", params=params, headers=AUTH)
        assert response.status_code == 200, response.text
        return list(response.json()["alerts"])

    assert [(a["alert_id"], a["late"], a["status"]) for a in await listed(late="true")] == [
        (late, True, "late")]
    assert {a["alert_id"] for a in await listed(late="false")} == {fresh, lost}
    assert [(a["alert_id"], a["unroutable"], a["status"]) for a in await listed(unroutable="true")] == [
        (lost, True, "unrouted")]
    record = (await api.client.get(f"/alerts/{late}", headers=AUTH)).json()
    assert record["late"] is True and record["deliveries"] == []


async def test_a_failed_alert_is_resent_through_the_api_and_the_history_says_who(api: Api) -> None:
    """POST /alerts/{id}/resend re-queues the failed e-mail, the alert is open again, and its history names who re-sent it."""
    [alert_id] = api.record(_failure(1), at=T0)
    [row] = api.store.claim_due(T0, 10)
    api.store.mark_failed(row.delivery_id, "SMTPConnectError: relay down")
    assert (await api.client.post(f"/alerts/{alert_id}/resend", json={}, headers=AUTH)).status_code == 400
    response = await api.client.post(f"/alerts/{alert_id}/resend", json={"by": "Ops Desk"}, headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"alert_id": alert_id, "deliveries": 1, "alert_ids": [alert_id]}
    record = (await api.client.get(f"/alerts/{alert_id}", headers=AUTH)).json()
    assert record["state"] == "open"
    assert record["deliveries"][0]["status"] == "pending"
    assert record["deliveries"][0]["resent_by"] == "Ops Desk"
    assert record["history"][-1]["action"] == "resent" and record["history"][-1]["by"] == "Ops Desk"
    again = await api.client.post(f"/alerts/{alert_id}/resend", json={"by": "Ops Desk"}, headers=AUTH)
    assert again.json()["deliveries"] == 0
    missing = await api.client.post("/alerts/al-nothing/resend", json={"by": "x"}, headers=AUTH)
    assert missing.status_code == 404
