"""Notifications in the manager's language: an alert e-mail through the delivery worker and a real SMTP server.

The store keeps no locale: the worker asks the current registry (its ``managers``
lookup) for the recipient's, so the same stored alert reaches a French manager in
French and an English one as before; the payload's data fields stay as they were.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.alerts.delivery.channels import EmailChannel
from monitor.alerts.delivery.links import AckLinks
from monitor.alerts.delivery.worker import DeliveryWorker
from monitor.alerts.messages.alert import render
from monitor.alerts.messages.digest import render_digest
from monitor.alerts.messages.incident_notice import render_notice
from monitor.alerts.messages.summary import render_summary
from monitor.alerts.ratelimit import Summary
from monitor.alerts.store import AlertStore, DigestRecord
from monitor.domain import AlertEvent, Manager, VipFailure
from monitor.incidents.model import Incident
from monitor.paths import rules_path
from monitor.pipeline.classify import default_table
from monitor.pipeline.selection import AlertPolicy
from monitor.testing.smtp import SmtpSink

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
RAW_PAN = "4111111111111111"
NBSP = "\u00a0"
AMELIE = Manager(manager_id="RM-033", name="Amélie Durand", email="amelie.durand@bank.example",
                 timezone="Europe/Paris", locale="fr")
WEI = Manager(manager_id="RM-088", name="Li Wei", email="li.wei@bank.example",
              timezone="Asia/Shanghai", locale="zh-Hans")


@pytest.fixture(autouse=True)
def _rule_files() -> None:
    """The shipped rule files are read, as at the monitor's start (their translations with them)."""
    default_table()
    AlertPolicy.load(rules_path("alerting.yaml"))


def _failure(manager: Manager, number: int, *, minutes: int = 0, amount_minor: int = 13409,
             currency: str = "EUR") -> VipFailure:
    """A technical failure (code 91) of client ``number`` of ``manager``, with a PAN that slipped in."""
    event = AlertEvent(
        event_id=f"ev-{manager.manager_id}-{number}-{minutes}", occurred_at=T0 + timedelta(minutes=minutes),
        channel="ATM", terminal_id="ATM00042", merchant_id="BNKPARIS0001", txn_type="withdrawal",
        amount_minor=amount_minor, currency=currency, response_code="91", outcome="technical",
        response_meaning=default_table().meaning("91"), pan_masked=RAW_PAN, card_ref=RAW_PAN)
    # The store snapshots the manager without a locale, as a store written before it existed.
    snapshot = Manager(manager_id=manager.manager_id, name=manager.name, email=manager.email,
                       timezone=manager.timezone)
    return VipFailure(event=event, customer_id=f"C-{number:04d}", customer_name=f"Client {number}",
                      tier="private", manager=snapshot, severity="high",
                      suggested_action=AlertPolicy.load(rules_path("alerting.yaml")).action_for("technical"))


async def test_a_french_manager_gets_the_alert_email_in_french(store_location: Path | str,
                                                               smtp_sink: SmtpSink) -> None:
    """The registry says fr: the e-mail's subject and body are French (Paris time, "134,09 €", the rule files' texts), the tags stay, no raw PAN anywhere."""
    registry = {m.manager_id: m for m in (AMELIE,)}
    with AlertStore(store_location) as store:
        store.record([_failure(AMELIE, 1)], now=T0 + timedelta(minutes=1))
        worker = DeliveryWorker(
            store, {"email": EmailChannel(smtp_sink.host, smtp_sink.port, sender="cardmon@bank.example",
                                          timeout=5),
                    },
            managers=registry.get, manager_channels=("email",),
            links=AckLinks("ack-secret-for-tests-0123456789", "https://cardmon.bank.example"),
            backoff_initial=0.01, backoff_max=0.05, poll_interval=0.01)
        assert await worker.deliver_due() >= 1
    [(to, subject, body)] = smtp_sink.deliveries()
    assert to == AMELIE.email
    body = re.sub(r" +", " ", body)  # the labels' padding
    # The subject's no-break spaces travel as plain spaces (see EmailChannel.build).
    assert subject == ("[HIGH] Client 1 (private): retrait d’espèces de 134,09 € en échec "
                       "(91 Émetteur ou commutateur hors service)")
    for text in (f"Client{NBSP}: Client 1 — private (client C-0001)", f"Gravité{NBSP}: élevée",
                 "Action" + NBSP + ": Ce sont les systèmes de la banque qui ont fait échouer",
                 "lun. 7 déc. 2026 10:00:00 CET",  # 09:00 UTC in Paris
                 "DAB ATM00042, commerçant BNKPARIS0001",
                 ("code réponse 91 Émetteur ou commutateur hors service — problème technique à la "
                  "banque ou sur le réseau"),
                 f"Chargé de clientèle{NBSP}: Amélie Durand", f"Acquitter{NBSP}: https://cardmon.bank.example/",
                 "(ouvre une page de confirmation"):
        assert text in body, text
    assert RAW_PAN not in body and RAW_PAN not in subject


def test_the_same_alert_reads_english_for_a_manager_without_a_locale(store_location: Path | str) -> None:
    """Rendered for an English reader the message is exactly today's English one."""
    with AlertStore(store_location) as store:
        [alert_id] = store.record([_failure(AMELIE, 2)], now=T0).new_alert_ids
        alert, events = store.get_alert(alert_id), store.alert_events(alert_id)
    assert alert is not None
    english = render(alert, events)
    assert english.payload["events"][0]["response_meaning"] == "Issuer or switch is inoperative"
    assert english.subject == ("[HIGH] Client 2 (private): cash withdrawal of €134.09 failed "
                               "(91 Issuer or switch is inoperative)")
    assert "Mon 07 Dec 2026, 10:00:00 CET" in english.text and english.payload["locale"] == "en"
    chinese = render(alert, events, locale="zh-Hans", manager_timezone="Asia/Shanghai")
    assert "2026年12月7日周一 17:00:00 CST" in chinese.text
    assert "客户：" in chinese.text and "发卡行或交换网络无法工作" in chinese.text
    assert "本次交易失败是本行系统造成的" in chinese.text
    assert chinese.payload["suggested_action"] == alert.suggested_action  # data stays English
    def data(events: list[dict[str, object]]) -> list[dict[str, object]]:
        return [{k: v for k, v in event.items() if k != "occurred_at_local"} for event in events]

    assert data(chinese.payload["events"]) == data(english.payload["events"])
    assert chinese.payload["locale"] == "zh-Hans"


def test_digest_summary_and_incident_notice_speak_the_managers_language(store_location: Path | str) -> None:
    """The daily digest, the rate-cap summary and an incident notice read French for a fr manager and Chinese for a zh-Hans one."""
    with AlertStore(store_location) as store:
        [alert_id] = store.record([_failure(WEI, 3)], now=T0).new_alert_ids
        alert = store.get_alert(alert_id)
        events = store.alert_events(alert_id)
    assert alert is not None
    record = DigestRecord(digest_id="dg-test", manager_id=WEI.manager_id, local_date=T0.date(),
                          timezone=WEI.timezone, period_start=T0 - timedelta(days=1), period_end=T0,
                          alert_count=1, created_at=T0)
    digest = render_digest(record, WEI, [(alert, "notified")])
    assert "每日告警摘要" in digest.text and "未确认" in digest.subject and "[DIGEST]" in digest.subject
    assert render_digest(record, AMELIE, [(alert, "notified")]).text.startswith(
        "Récapitulatif quotidien des alertes pour Amélie Durand")
    summary = Summary(summary_id="sm-test", manager_id=WEI.manager_id, period_start=T0, period_end=T0,
                      alert_count=1, created_at=T0)
    text = render_summary(summary, WEI, [(alert, "open")]).text
    assert "您最近收到的告警较多" in text and "本次交易失败是本行系统造成的" in text
    incident = Incident(incident_id="in-test", scope="issuer", scope_key="411111", started_at=T0,
                        last_failure_at=T0, ended_at=None, failures=40, cards=30, terminals=3,
                        relapses=0, flapping=False, note=None, created_at=T0, updated_at=T0)
    notice = render_notice(incident, "opened", AMELIE, [(alert, "open", T0, events)], locale="fr")
    assert "Émetteur de la carte (IIN) 411111" in notice.subject and "Bonjour Amélie Durand," in notice.text
    for message in (digest, notice):
        assert RAW_PAN not in message.text and RAW_PAN not in json.dumps(message.payload)
