"""The workspace in the manager's language: pages, dates, money, rule texts and the sign-in mail.

Real parts: the aiohttp application on aiohttp's test server (real HTTP on 127.0.0.1), a
real SQLite or PostgreSQL store, a real SMTP server receiving the sign-in mail.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from pydantic import ValidationError

from monitor.config.workspace import WorkspaceSettings
from monitor.domain import AlertEvent, Manager, VipFailure
from monitor.paths import rules_path
from monitor.pipeline.classify import default_table
from monitor.pipeline.selection import AlertPolicy
from tests.workspace.conftest import RAW_PAN, T0, Site

AMELIE = Manager(manager_id="RM-033", name="Amélie Durand", email="amelie.durand@bank.example",
                 timezone="Europe/Paris", locale="fr")
WEI = Manager(manager_id="RM-088", name="Li Wei", email="li.wei@bank.example",
              timezone="Asia/Shanghai", locale="zh-Hans")
NBSP = "\u00a0"


@pytest.fixture(autouse=True)
def _rule_files() -> None:
    """The shipped rule files are read, as at the monitor's start (their translations with them)."""
    default_table()
    AlertPolicy.load(rules_path("alerting.yaml"))


def _record(site: Site, manager: Manager, number: int) -> str:
    """One technical failure (code 91, EUR 134.09, a PAN slipped in) of a client of ``manager``."""
    policy = AlertPolicy.load(rules_path("alerting.yaml"))
    event = AlertEvent(
        event_id=f"ev-{manager.manager_id}-{number}", occurred_at=T0, channel="ATM",
        terminal_id="ATM00042", merchant_id="BNKPARIS0001", txn_type="withdrawal",
        amount_minor=13409, currency="EUR", response_code="91", outcome="technical",
        response_meaning=default_table().meaning("91"), pan_masked=RAW_PAN, card_ref=RAW_PAN)
    failure = VipFailure(event=event, customer_id=f"C-{number:04d}", customer_name=f"Client {number}",
                         tier="private", manager=manager, severity="high",
                         suggested_action=policy.action_for("technical"))
    [alert_id] = site.store.record([failure], now=T0 + timedelta(minutes=1)).new_alert_ids
    return alert_id


def _lang(page: str) -> str:
    match = re.search(r'<html lang="([^"]+)">', page)
    assert match is not None
    return match.group(1)


async def test_a_french_manager_reads_french_pages(site: Site) -> None:
    """A manager whose registry locale is fr gets French pages: words, Paris times, "134,09 €", the rule files' French texts."""
    site.managers[AMELIE.manager_id] = AMELIE
    alert_id = _record(site, AMELIE, 1)
    client = await site.signed_in(AMELIE.manager_id)

    listing = await client.get("/workspace/alerts")
    page = await listing.text()
    assert listing.headers["Content-Language"] == "fr" and _lang(page) == "fr"
    for text in ("Alertes de mes clients", "Gravité", "élevée", "<td>ouverte</td>",
                 "Se déconnecter", "07/12/2026 10:00 CET"):
        assert text in page, text

    detail = await client.get(f"/workspace/alerts/{alert_id}")
    page = await detail.text()
    for text in ("Alerte pour Client 1", "Transactions échouées", f"134,09{NBSP}€",
                 "07/12/2026 10:00:00 CET",  # 09:00 UTC in Paris
                 "Émetteur ou commutateur hors service",
                 "Ce sont les systèmes de la banque qui ont fait échouer cette transaction",
                 "Acquitter", "Historique", "Retour aux alertes de mes clients"):
        assert text in page, text
    assert "Issuer or switch is inoperative" not in page and RAW_PAN not in page


async def test_a_chinese_manager_reads_simplified_chinese_pages(site: Site) -> None:
    """A zh-Hans manager gets Simplified Chinese pages with Shanghai times and the rule files' Chinese texts."""
    site.managers[WEI.manager_id] = WEI
    alert_id = _record(site, WEI, 2)
    client = await site.signed_in(WEI.manager_id)
    page = await (await client.get("/workspace/alerts")).text()
    assert _lang(page) == "zh-Hans"
    assert "我的客户告警" in page and "严重程度" in page and ">高<" in page
    page = await (await client.get(f"/workspace/alerts/{alert_id}")).text()
    for text in ("Client 2 的告警", "失败的交易", "2026/12/7 17:00:00 CST",  # 09:00 UTC in Shanghai
                 "€134.09", "发卡行或交换网络无法工作", "本次交易失败是本行系统造成的", "确认", "历史记录"):
        assert text in page, text
    assert RAW_PAN not in page


async def test_messages_and_refusals_speak_the_managers_language(site: Site) -> None:
    """A 404 and a refused form answer in the manager's language, the same for what exists and what does not."""
    site.managers[AMELIE.manager_id] = AMELIE
    client = await site.signed_in(AMELIE.manager_id)
    missing = await client.get("/workspace/alerts/al-nope")
    page = await missing.text()
    assert missing.status == 404 and "Introuvable" in page and _lang(page) == "fr"
    refused = await client.post("/workspace/sign-out", data={"csrf_token": "forged"})
    assert refused.status == 403 and "Demande refusée" in await refused.text()


@pytest.mark.parametrize(("accept", "lang", "title"), [
    ("fr-FR,fr;q=0.9,en;q=0.5", "fr", "Connexion"),
    ("zh-CN,zh;q=0.9", "zh-Hans", "登录"),
    ("de-DE,de;q=0.9", "en", "Sign in"),
    (None, "en", "Sign in"),
])
async def test_before_sign_in_the_page_follows_the_browser(site: Site, accept: str | None, lang: str,
                                                           title: str) -> None:
    """The sign-in form speaks the language the browser's Accept-Language prefers among those cardmon has, else English."""
    client = await site.client()
    response = await client.get("/workspace/sign-in", headers={"Accept-Language": accept} if accept else {})
    page = await response.text()
    assert response.status == 200 and _lang(page) == lang
    assert f"<h1>{title}</h1>" in page


async def test_the_sign_in_mail_is_in_the_managers_language(site: Site) -> None:
    """The sign-in link reaches a French manager in French through the real SMTP server, whatever the browser's language."""
    site.managers[AMELIE.manager_id] = AMELIE
    client = await site.client()
    response = await client.post("/workspace/sign-in", data={"who": AMELIE.manager_id},
                                 headers={"Accept-Language": "en"})
    assert response.status == 200
    await site.workspace.close()  # every background send has finished
    [(recipients, mail)] = site.sink.messages()
    assert recipients == [AMELIE.email]
    assert mail["Subject"] == "Votre lien de connexion cardmon"
    body = mail.get_content()
    assert body.startswith("Bonjour Amélie Durand,")
    assert "Ouvrez ce lien pour vous connecter" in body and "dans un délai de 15 minutes" in body


async def test_the_evidence_and_client_pages_speak_french_too(site: Site) -> None:
    """The alert's evidence (terminal, incident, deliveries) and the client's page are French for a French manager, money included."""
    site.managers[AMELIE.manager_id] = AMELIE
    alert_id = _record(site, AMELIE, 4)
    client = await site.signed_in(AMELIE.manager_id)
    page = await (await client.get(f"/workspace/alerts/{alert_id}")).text()
    for text in ("Au terminal", "Ne fait pas partie d’un incident", "Envois", "en attente"):
        assert text in page, text
    page = await (await client.get("/workspace/clients/C-0004")).text()
    for text in ("Client private", "Montant en échec", f"134,09{NBSP}€", "technique ×1", "élevée",
                 "07/12/2026 10:00 CET", "Émetteur ou commutateur hors service"):
        assert text in page, text
    assert RAW_PAN not in page


@pytest.mark.parametrize(("locale", "accepted"), [("fr", True), ("zh-CN", True), ("de", False),
                                                  ("klingon", False)])
def test_an_operations_persons_locale_is_checked_at_start(locale: str, accepted: bool) -> None:
    """Operations' own ``locale`` setting is read like the registry's: a language without a catalogue stops the start."""
    person = {"id": "OPS-7", "name": "Priya Nair", "email": "priya.nair@bank.example", "locale": locale}
    if accepted:
        assert WorkspaceSettings(operations=[person]).operations[0].locale == locale  # type: ignore[list-item]
    else:
        with pytest.raises(ValidationError, match="locale"):
            WorkspaceSettings(operations=[person])  # type: ignore[list-item]
