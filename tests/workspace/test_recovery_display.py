"""The workspace shows each alert's recovery watch: watching, recovered (where, how soon) or abandoned, with a list badge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.alerts.store import AlertStore
from tests.workspace.conftest import CLAIRE, JONAS, T0, Site


def watch(store: AlertStore, alert_id: str, status: str, *,
          recovered_after: timedelta | None = None, terminal: str = "ATM-0042",
          follow_up: int = 0) -> None:
    """Write the alert's recovery watch row as the watch's core would (schema 8)."""
    def text(moment: datetime) -> str:
        return moment.astimezone(UTC).isoformat()

    deadline = T0 + timedelta(minutes=30)
    recovered = T0 + recovered_after if recovered_after is not None else None
    decided = recovered or (deadline if status == "abandoned" else None)
    with store._transaction() as conn:
        conn.execute(
            """INSERT INTO alert_recoveries (alert_id, customer_id, manager_id, channel, txn_type,
                outcome, failed_terminal_id, first_failed_at, last_failed_at, deadline, status,
                recovered_at, recovery_event_id, recovery_terminal_id, decided_at, follow_up)
            VALUES (?, 'C-0001', 'RM-017', 'ATM', 'withdrawal', 'technical', 'ATM00042',
                    ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (alert_id, text(T0), text(T0), text(deadline), status,
             text(recovered) if recovered else None, "ev-ok" if recovered else None,
             terminal if recovered else None, text(decided) if decided else None, follow_up))


def recovery_part(html: str) -> str:
    """The alert page's recovery section."""
    return html.split("<h2>Recovery</h2>")[1].split("<h2>")[0]


async def test_a_watch_in_progress_says_until_when(site: Site) -> None:
    """While watching, the alert page says "Watching until 09:30" in the reader's zone; the list has no badge."""
    alert_id = site.record(1, name="Ana Silva")
    watch(site.store, alert_id, "watching")
    client = await site.signed_in(CLAIRE.manager_id)
    html = await (await client.get(f"/workspace/alerts/{alert_id}")).text()
    assert ("Watching until 09:30 UTC: cardmon follows the client's next cash withdrawal."
            in recovery_part(html))
    listing = await (await client.get("/workspace/alerts")).text()
    assert "badge-" not in listing.split("<tbody>")[1]


async def test_a_recovery_at_another_terminal_says_how_soon_and_where(site: Site) -> None:
    """Recovered: "Recovered 4 min later at ATM-0042 (another terminal)", the follow-up noted, a recovered badge in the list."""
    alert_id = site.record(1, name="Ana Silva")
    watch(site.store, alert_id, "recovered", recovered_after=timedelta(minutes=4), follow_up=1)
    client = await site.signed_in(CLAIRE.manager_id)
    part = recovery_part(await (await client.get(f"/workspace/alerts/{alert_id}")).text())
    assert "Recovered 4 min later at ATM-0042 (another terminal), 09:04 UTC." in part
    assert "A follow-up message was sent to the manager." in part
    listing = await (await client.get("/workspace/alerts")).text()
    assert '<span class="badge badge-recovered">recovered</span>' in listing


async def test_a_recovery_at_the_same_terminal_says_so(site: Site) -> None:
    """Recovered at the terminal that failed: "(the same terminal)"."""
    alert_id = site.record(1, name="Ana Silva")
    watch(site.store, alert_id, "recovered", recovered_after=timedelta(minutes=12),
          terminal="ATM00042")
    client = await site.signed_in(CLAIRE.manager_id)
    part = recovery_part(await (await client.get(f"/workspace/alerts/{alert_id}")).text())
    assert "Recovered 12 min later at ATM00042 (the same terminal), 09:12 UTC." in part


async def test_an_abandoned_watch_says_no_successful_transaction(site: Site) -> None:
    """Abandoned: "no successful cash withdrawal within 30 min", no follow-up sent, an abandoned badge."""
    alert_id = site.record(1, name="Ana Silva")
    watch(site.store, alert_id, "abandoned", follow_up=2)
    client = await site.signed_in(CLAIRE.manager_id)
    part = recovery_part(await (await client.get(f"/workspace/alerts/{alert_id}")).text())
    assert "Abandoned: no successful cash withdrawal within 30 min." in part
    assert "No follow-up message" in part
    listing = await (await client.get("/workspace/alerts")).text()
    assert '<span class="badge badge-abandoned">abandoned</span>' in listing


async def test_the_recovery_is_shown_only_to_who_may_see_the_alert(site: Site) -> None:
    """Another manager gets 404 for the alert, and an alert without a watch shows no recovery section."""
    alert_id = site.record(1, name="Ana Silva")
    other_id = site.record(2, name="Bruno Costa")
    watch(site.store, alert_id, "recovered", recovered_after=timedelta(minutes=4))
    stranger = await site.signed_in(JONAS.manager_id)
    assert (await stranger.get(f"/workspace/alerts/{alert_id}")).status == 404
    listing = await (await stranger.get("/workspace/alerts")).text()
    assert "Ana Silva" not in listing and "badge-" not in listing.split("<tbody>")[1]
    client = await site.signed_in(CLAIRE.manager_id)
    assert "<h2>Recovery</h2>" not in await (await client.get(f"/workspace/alerts/{other_id}")).text()
