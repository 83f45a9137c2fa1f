"""The workspace shows an alert's recovery watch: watching, recovered (where, when) or abandoned."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from monitor.alerts.store import AlertStore, RecoveryMatch
from monitor.domain import Manager
from tests.alerts.conftest import _make_failure
from tests.workspace.conftest import CLAIRE, JONAS, T0, Site


def record(site: Site, number: int, name: str, manager: Manager = CLAIRE) -> str:
    """Record a failed withdrawal of client ``number`` at ATM00042, watched; return its ID."""
    failure = _make_failure(f"ev-{number}", T0, customer_id=f"C-{number:04d}", customer_name=name,
                            manager=manager)
    [alert_id] = site.store.record([failure], now=T0, recovery_window_seconds=1800).new_alert_ids
    return alert_id


def decide(store: AlertStore, alert_id: str, status: str, *,
           recovered_after: timedelta = timedelta(minutes=4), terminal: str = "ATM-0042") -> None:
    """Decide the alert's recovery watch through the store, as the watch's core does."""
    if status == "recovered":
        store.mark_recovered([RecoveryMatch(alert_id=alert_id, recovered_at=T0 + recovered_after,
                                            event_id="ev-ok", terminal_id=terminal)],
                             now=T0 + recovered_after)
    else:
        store.abandon_watches(T0 + timedelta(minutes=31), now=T0 + timedelta(minutes=31))


def recovery_part(html: str) -> str:
    """The alert page's recovery section."""
    return html.split("<h2>Recovery</h2>")[1].split("<h2>")[0]


async def test_a_watch_in_progress_says_until_when(site: Site) -> None:
    """While watching: "Watching until 09:30" in the reader's zone, and no badge in the list."""
    alert_id = record(site, 1, "Ana Silva")
    client = await site.signed_in(CLAIRE.manager_id)
    html = await (await client.get(f"/workspace/alerts/{alert_id}")).text()
    assert ("Watching until 09:30 UTC: cardmon follows the client's next cash withdrawal."
            in recovery_part(html))
    listing = await (await client.get("/workspace/alerts")).text()
    assert "badge-" not in listing.split("<tbody>")[1]


async def test_a_recovery_at_another_terminal_says_how_soon_and_where(site: Site) -> None:
    """Recovered: "Recovered 4 min later at ATM-0042 (another terminal)", and a badge."""
    alert_id = record(site, 1, "Ana Silva")
    decide(site.store, alert_id, "recovered")
    site.store.queue_recovery_follow_ups(T0 + timedelta(minutes=5),
                                         managers={CLAIRE.manager_id:
                                                   replace(CLAIRE, recovery_follow_up=True)})
    client = await site.signed_in(CLAIRE.manager_id)
    part = recovery_part(await (await client.get(f"/workspace/alerts/{alert_id}")).text())
    assert "Recovered 4 min later at ATM-0042 (another terminal), 09:04 UTC." in part
    assert "A follow-up message to the manager was queued for delivery." in part
    listing = await (await client.get("/workspace/alerts")).text()
    assert '<span class="badge badge-recovered">recovered</span>' in listing


async def test_a_recovery_at_the_same_terminal_says_so(site: Site) -> None:
    """Recovered at the terminal that failed: "(the same terminal)"."""
    alert_id = record(site, 1, "Ana Silva")
    decide(site.store, alert_id, "recovered", recovered_after=timedelta(minutes=12),
           terminal="ATM00042")
    client = await site.signed_in(CLAIRE.manager_id)
    part = recovery_part(await (await client.get(f"/workspace/alerts/{alert_id}")).text())
    assert "Recovered 12 min later at ATM00042 (the same terminal), 09:12 UTC." in part


async def test_an_abandoned_watch_says_no_successful_transaction(site: Site) -> None:
    """Abandoned: "no successful cash withdrawal within 30 min", no follow-up, a badge."""
    alert_id = record(site, 1, "Ana Silva")
    decide(site.store, alert_id, "abandoned")
    site.store.queue_recovery_follow_ups(T0 + timedelta(minutes=32),
                                         managers={CLAIRE.manager_id: CLAIRE})  # not opted in
    client = await site.signed_in(CLAIRE.manager_id)
    part = recovery_part(await (await client.get(f"/workspace/alerts/{alert_id}")).text())
    assert "Abandoned: no successful cash withdrawal within 30 min." in part
    assert "follow-up" not in part
    listing = await (await client.get("/workspace/alerts")).text()
    assert '<span class="badge badge-abandoned">abandoned</span>' in listing


async def test_the_recovery_is_shown_only_to_who_may_see_the_alert(site: Site) -> None:
    """Another manager gets 404; an alert without a watch shows no recovery section."""
    alert_id = record(site, 1, "Ana Silva")
    other_id = site.record(2, name="Bruno Costa")  # recorded without a watch
    decide(site.store, alert_id, "recovered")
    stranger = await site.signed_in(JONAS.manager_id)
    assert (await stranger.get(f"/workspace/alerts/{alert_id}")).status == 404
    listing = await (await stranger.get("/workspace/alerts")).text()
    assert "Ana Silva" not in listing and "badge-" not in listing.split("<tbody>")[1]
    client = await site.signed_in(CLAIRE.manager_id)
    page = await (await client.get(f"/workspace/alerts/{other_id}")).text()
    assert "<h2>Recovery</h2>" not in page


@pytest.mark.parametrize(("locale", "expected"), [
    ("en", "Recovered less than a minute later at ATM-0042 (another terminal), 09:00 UTC."),
    ("fr", "Rétabli moins d’une minute plus tard à ATM-0042 (un autre terminal), 09:00 UTC."),
    ("zh-Hans", "不到一分钟后在 ATM-0042（另一终端）恢复，"),
])
async def test_a_recovery_within_a_minute_says_less_than_a_minute_later(
    site: Site, locale: str, expected: str
) -> None:
    """Recovered 40 s after the failure: "less than a minute later", never "0 min later", in the reader's language."""
    reader = replace(CLAIRE, locale=locale)
    site.managers[reader.manager_id] = reader
    alert_id = record(site, 1, "Ana Silva", manager=reader)
    decide(site.store, alert_id, "recovered", recovered_after=timedelta(seconds=40))
    client = await site.signed_in(reader.manager_id)
    page = await (await client.get(f"/workspace/alerts/{alert_id}")).text()
    shown = page.split('<p id="recovery"')[1].split("</p>")[0]
    assert expected in shown
    assert " 0 min" not in shown and ">0 分钟" not in shown


async def test_an_alert_of_two_kinds_names_both_while_watching_and_abandoned(site: Site) -> None:
    """A failed purchase then a failed withdrawal: the page follows, then misses, "a purchase at a card terminal or a cash withdrawal at an ATM"."""
    purchase = _make_failure("ev-1", T0, customer_id="C-0001", customer_name="Ana Silva",
                             manager=CLAIRE, channel="POS", txn_type="purchase",
                             terminal_id="POS-0009")
    withdrawal = _make_failure("ev-2", T0 + timedelta(minutes=1), customer_id="C-0001",
                               customer_name="Ana Silva", manager=CLAIRE)
    [alert_id] = site.store.record([purchase, withdrawal], now=T0 + timedelta(minutes=1),
                                   recovery_window_seconds=1800).new_alert_ids
    client = await site.signed_in(CLAIRE.manager_id)
    part = recovery_part(await (await client.get(f"/workspace/alerts/{alert_id}")).text())
    assert ("cardmon follows the client's next purchase at a card terminal or cash withdrawal "
            "at an ATM.") in part
    later = T0 + timedelta(minutes=32)
    site.store.abandon_watches(later, now=later)
    part = recovery_part(await (await client.get(f"/workspace/alerts/{alert_id}")).text())
    assert ("Abandoned: no successful purchase at a card terminal or cash withdrawal at an ATM "
            "within 30 min.") in part


@pytest.mark.parametrize(("locale", "words"), [
    ("fr", ("achat sur un terminal de paiement, retrait d’espèces à un DAB ou achat en ligne",)),
    ("zh-Hans", ("刷卡终端消费、ATM 取现或网上消费",)),
])
async def test_an_alert_of_three_kinds_names_them_all_in_the_readers_language(
    site: Site, locale: str, words: tuple[str, ...]
) -> None:
    """A purchase, a withdrawal and an online purchase failed: the page names the three, joined as the language joins them."""
    reader = replace(CLAIRE, locale=locale)
    site.managers[reader.manager_id] = reader
    failures = [
        _make_failure("ev-1", T0, customer_id="C-0001", customer_name="Ana <b>Silva</b>",
                      manager=reader, channel="POS", txn_type="purchase", terminal_id="POS-0009"),
        _make_failure("ev-2", T0 + timedelta(minutes=1), customer_id="C-0001",
                      customer_name="Ana <b>Silva</b>", manager=reader),
        _make_failure("ev-3", T0 + timedelta(minutes=2), customer_id="C-0001",
                      customer_name="Ana <b>Silva</b>", manager=reader, channel="ECOM",
                      txn_type="purchase", terminal_id="WEB-0001"),
    ]
    [alert_id] = site.store.record(failures, now=T0 + timedelta(minutes=2),
                                   recovery_window_seconds=1800).new_alert_ids
    client = await site.signed_in(reader.manager_id)
    later = T0 + timedelta(minutes=33)
    site.store.abandon_watches(later, now=later)
    page = await (await client.get(f"/workspace/alerts/{alert_id}")).text()
    shown = page.split('<p id="recovery"')[1].split("</p>")[0]
    assert all(word in shown for word in words), shown
    assert "<b>" not in page
