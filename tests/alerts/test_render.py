"""Rendering: the facts a relationship manager needs, in their time zone and currency."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.alerts.messages.alert import format_amount, render
from monitor.alerts.store import AlertStore
from monitor.domain import Alert, AlertEvent, VipFailure

T0 = datetime(2024, 5, 6, 12, 1, 30, tzinfo=UTC)  # 14:01:30 CEST in Paris
MakeFailure = Callable[..., VipFailure]


def _stored(tmp_path: Path, failures: list[VipFailure]) -> tuple[Alert, list[AlertEvent]]:
    with AlertStore(tmp_path / "alerts.db") as store:
        store.record(failures)
        (alert,) = store.list_alerts()
        return alert, store.alert_events(alert.alert_id)


@pytest.mark.parametrize(
    ("amount_minor", "currency", "expected"),
    [(13409, "USD", "$134.09"), (123450, "EUR", "€1,234.50"), (1234, "JPY", "¥1,234"),
     (1234567, "BHD", "BHD1,234.567"), (0, "GBP", "£0.00")],
)
def test_amounts_use_the_currency_exponent(amount_minor: int, currency: str, expected: str) -> None:
    """Minor units are scaled by the ISO 4217 exponent of their currency, never through float."""
    assert format_amount(amount_minor, currency).replace("\xa0", "") == expected


def test_one_failure_reads_like_a_manager_note(tmp_path: Path, make_failure: MakeFailure) -> None:
    """A single failure names client, tier, card, local time, place, amount, code, meaning and action."""
    alert, events = _stored(tmp_path, [make_failure("ev-1", T0)])
    message = render(alert, events, manager_timezone="Europe/Paris")
    assert message.subject == (
        "[HIGH] Ada Lovelace (private): cash withdrawal of $134.09 failed (51 Insufficient funds)"
    )
    for fact in ("Ada Lovelace — private", "411111******1111", "Mon 06 May 2024, 14:01:30 CEST",
                 "ATM ATM00042, merchant BNKPARIS0001, Paris, IDF", "cash withdrawal of $134.09",
                 "response code 51 Insufficient funds — declined for the client's account",
                 "Call the client and offer an emergency cash advance."):
        assert fact in message.text
    assert message.email == "claire.martin@bank.example" and message.webhook_url is None
    assert message.for_channel("email").idempotency_key == f"{alert.alert_id}:email"


def test_times_follow_the_manager_zone(tmp_path: Path, make_failure: MakeFailure) -> None:
    """The same event shows in New York time for a New York manager, and in UTC for an unknown zone."""
    alert, events = _stored(tmp_path, [make_failure("ev-1", T0)])
    assert "Mon 06 May 2024, 08:01:30 EDT" in render(alert, events, manager_timezone="America/New_York").text
    assert "12:01:30 UTC" in render(alert, events, manager_timezone="Mars/Olympus_Mons").text


def test_a_timeout_has_no_response_code(tmp_path: Path, make_failure: MakeFailure) -> None:
    """A timeout says no response came, with its outcome class, and no code."""
    failure = make_failure("ev-1", T0, response_code=None, status="timeout", outcome="technical",
                           response_meaning="No response (timeout)", channel="POS",
                           terminal_id="POS7781", txn_type="purchase", amount_minor=123450,
                           currency="EUR", merchant_id=None, city=None, region=None)
    alert, events = _stored(tmp_path, [failure])
    message = render(alert, events, manager_timezone="Europe/Paris")
    assert "no response from the issuer (timeout) — technical problem at the bank or network" in message.text
    assert "card terminal (POS) POS7781\n" in message.text
    assert message.subject.endswith("purchase of €1,234.50 failed (No response (timeout))")
    assert message.payload["events"][0]["response_code"] is None


def test_a_card_without_masked_pan_shows_a_short_reference(tmp_path: Path, make_failure: MakeFailure) -> None:
    """Without a masked PAN the card is named by the start of its token."""
    alert, events = _stored(tmp_path, [make_failure("ev-1", T0, pan_masked=None)])
    assert "Card:    card ref tok_9f8e…" in render(alert, events).text


def test_several_failures_are_listed_newest_first(tmp_path: Path, make_failure: MakeFailure) -> None:
    """Three failures give a count and a compact list, newest first, in the manager's zone."""
    failures = [
        make_failure("ev-0", T0, amount_minor=5000),
        make_failure("ev-1", T0 + timedelta(minutes=2), amount_minor=7000, response_code="55",
                     response_meaning="Incorrect PIN", outcome="card"),
        make_failure("ev-2", T0 + timedelta(minutes=4), amount_minor=9000),
    ]
    alert, events = _stored(tmp_path, failures)
    message = render(alert, events, manager_timezone="Europe/Paris")
    assert message.subject == (
        "[HIGH] Ada Lovelace (private): 3 failed transactions, latest cash withdrawal of $90.00 (51)"
    )
    assert "3 failed transactions between 14:01 and 14:05 CEST, newest first:" in message.text
    listed = [line for line in message.text.splitlines() if line.startswith("  14:0")]
    assert [line.split()[0] for line in listed] == ["14:05:30", "14:03:30", "14:01:30"]
    assert "55 Incorrect PIN" in listed[1]
    assert [e["event_id"] for e in message.payload["events"]] == ["ev-2", "ev-1", "ev-0"]


def test_payload_is_json_with_the_same_facts(tmp_path: Path, make_failure: MakeFailure) -> None:
    """The payload survives JSON and carries client, severity, amounts in minor units and local times."""
    alert, events = _stored(tmp_path, [make_failure("ev-1", T0)])
    payload = json.loads(json.dumps(render(alert, events, manager_timezone="Europe/Paris").payload))
    assert payload["schema"] == "cardmon.alert.v1"
    assert payload["customer"] == {"customer_id": "C-1001", "name": "Ada Lovelace", "tier": "private"}
    assert payload["severity"] == "high" and payload["event_count"] == 1
    event = payload["events"][0]
    assert (event["amount_minor"], event["currency"], event["amount"]) == (13409, "USD", "$134.09")
    assert event["occurred_at_local"] == "2024-05-06T14:01:30+02:00"
    assert event["card"] == "411111******1111"


def test_render_refuses_an_alert_without_events(tmp_path: Path, make_failure: MakeFailure) -> None:
    """An alert with no events cannot be rendered."""
    alert, _ = _stored(tmp_path, [make_failure("ev-1", T0)])
    with pytest.raises(ValueError, match="no events"):
        render(alert, [])
