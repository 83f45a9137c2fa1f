"""Make the README's screenshot of the workspace's alert page: ``python docs/screenshot.py``.

Serves the real workspace (the alert API with ``/workspace``) on 127.0.0.1 over a
throwaway SQLite store holding one VIP client's failed withdrawals, another client's
failure at the same ATM and a delivered e-mail; signs in as the client's manager with
a fresh sign-in link; opens the alert page in Debian's Chromium (Playwright) and writes
``docs/images/workspace-alert.png`` (or the path given as the one argument). Needs ``cardmon[test]`` (Playwright) and the system
Chromium (``apt-get install chromium``). Every name and card in it is made up; the
cards are masked as cardmon shows them.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.alerts.store import AlertStore, window_start_for
from monitor.api import build_api, start_api
from monitor.domain import AlertEvent, Manager, VipFailure
from monitor.testing.browser import find_chromium, launch_chromium, open_tab
from monitor.workspace import Sessions, SignInMailer, SignInTokens, Workspace

OUT = Path(__file__).resolve().parent / "images" / "workspace-alert.png"
SECRET = "screenshot-secret-0123456789abcdef"
CLAIRE = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example",
                 timezone="Europe/Paris")
JONAS = Manager(manager_id="RM-042", name="Jonas Weber", email="jonas.weber@bank.example",
                timezone="Europe/Paris")


def _failure(event_id: str, at: datetime, customer: tuple[str, str], manager: Manager, card: str,
             amount_minor: int) -> VipFailure:
    event = AlertEvent(event_id=event_id, occurred_at=at, channel="ATM", terminal_id="APAR0001",
                       merchant_id="BNKPARIS0001", merchant_name="Agence Opéra", txn_type="withdrawal",
                       amount_minor=amount_minor, currency="EUR", response_code=None,
                       outcome="technical", status="timeout",
                       response_meaning="No response from issuer/switch (timeout)", pan_masked=card,
                       city="Paris", region="Île-de-France")
    return VipFailure(event=event, customer_id=customer[0], customer_name=customer[1], tier="private",
                      manager=manager, severity="high",
                      suggested_action="The bank's systems got no answer in time: apologise, the "
                                       "operations team is notified; the client can retry shortly.")


def _record(store: AlertStore, now: datetime) -> str:
    # Two minutes into a 10-minute alert window that ended a while ago: Ada's two failures
    # (a minute apart) always make one alert, whatever the time the script runs.
    start = window_start_for(now - timedelta(minutes=25)) + timedelta(minutes=2)
    [alert_id] = store.record([
        _failure("ev-1", start, ("C-1001", "Ada Lovelace"), CLAIRE, "497010******0001", 40000),
        _failure("ev-2", start + timedelta(minutes=1), ("C-1001", "Ada Lovelace"), CLAIRE,
                 "497010******0001", 20000),
    ], now=now, channels=("email",)).new_alert_ids
    store.record([_failure("ev-3", start + timedelta(minutes=4), ("C-2002", "Blaise Pascal"), JONAS,
                           "535522******0002", 10000)], now=now, channels=("email",))
    [email] = store.get_alert(alert_id).deliveries  # type: ignore[union-attr]
    store.mark_sent(email.delivery_id, now + timedelta(seconds=2))
    store.acknowledge(alert_id, by=CLAIRE.manager_id, via="workspace",
                      note="Calling her now.", at=now + timedelta(minutes=3))
    return alert_id


async def main(out: Path = OUT) -> int:
    """Write the screenshot to ``out``; returns the exit code."""
    executable = find_chromium()
    if executable is None:
        print("no system Chromium: apt-get install chromium", file=sys.stderr)
        return 1
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="cardmon-screenshot-") as scratch, \
            AlertStore(Path(scratch) / "alerts.db") as store:
        alert_id = _record(store, now)
        managers = {m.manager_id: m for m in (CLAIRE, JONAS)}
        tokens = SignInTokens(SECRET, max_age_seconds=900)
        workspace = Workspace(store=store, tokens=tokens,
                              sessions=Sessions(store, SECRET, max_age_seconds=3600),
                              mailer=SignInMailer(tokens, "http://127.0.0.1", managers=lambda: managers,
                                                  email=None))
        server = await start_api(build_api(store, workspace=workspace))
        try:
            async with launch_chromium(executable) as browser, open_tab(browser) as tab:
                page = tab.page
                await page.set_viewport_size({"width": 900, "height": 1000})
                await page.goto(f"{server.url}/workspace/sign-in/{tokens.issue(CLAIRE.manager_id)}")
                await page.get_by_role("button", name=f"Sign in as {CLAIRE.name}").click()
                await page.wait_for_url("**/workspace/alerts")
                await page.goto(f"{server.url}/workspace/alerts/{alert_id}")
                out.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(out), full_page=True)
        finally:
            await server.close()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)))
