"""Make the README's picture of the fast-correction report: ``python docs/report_screenshot.py``.

Records a made-up week of VIP failures in a throwaway SQLite store through the store's
own API (five managers, two of them a team; acknowledgements, resolutions with
outcomes, recovery decisions), writes the report exactly as ``cardmon report`` does,
opens the file in Debian's Chromium (Playwright) and writes the first screen of it,
``docs/images/report.png`` (or the path given as the one argument). Needs
``cardmon[test]`` (Playwright) and the system Chromium (``apt-get install chromium``).
The numbers come from a seeded generator: the same picture each run.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from monitor.alerts.states import RESOLUTION_OUTCOMES
from monitor.alerts.store import AlertStore, window_start_for
from monitor.domain import Manager, VipFailure
from monitor.report import gather, render_html
from monitor.testing.browser import find_chromium, launch_chromium, open_tab
from monitor.testing.samples import sample_failure, write_recovery_row

#: The README shows the first screen (header, counts, failures by cause and day).
FULL_PAGE = False
OUT = Path(__file__).resolve().parent / "images" / "report.png"
PARIS = ZoneInfo("Europe/Paris")
SINCE = datetime(2026, 11, 30, tzinfo=PARIS)
UNTIL = datetime(2026, 12, 7, tzinfo=PARIS)
MANAGERS = (
    Manager(
        manager_id="RM-017",
        name="Claire Martin",
        email="claire@bank.example",
        timezone="Europe/Paris",
    ),
    Manager(
        manager_id="RM-042", name="Jonas Weber", email="jonas@bank.example", timezone="Europe/Paris"
    ),
    Manager(
        manager_id="RM-051", name="Sofia Rossi", email="sofia@bank.example", timezone="Europe/Paris"
    ),
    Manager(manager_id="RM-063", name="Li Wei", email="li@bank.example", timezone="Europe/Paris"),
    Manager(
        manager_id="RM-078",
        name="Amara Diallo",
        email="amara@bank.example",
        timezone="Europe/Paris",
    ),
)
CLASSES = (("technical", 5), ("terminal", 3), ("card", 2), ("customer", 6), ("fraud", 1))
TERMINALS = tuple(f"ATM{n:05d}" for n in range(1, 13)) + tuple(f"POS{n:05d}" for n in range(1, 9))


def _failures(rng: random.Random, number: int, at: datetime, manager: Manager) -> list[VipFailure]:
    outcome = rng.choices([c for c, _ in CLASSES], weights=[w for _, w in CLASSES])[0]
    terminal = rng.choice(
        TERMINALS[:4] if outcome in ("technical", "terminal") and rng.random() < 0.6 else TERMINALS
    )
    return [
        sample_failure(f"ev-{number}-{retry}", at + timedelta(seconds=30 * retry),
                       customer_id=f"C-{number}", customer_name=f"Sample client {number}",
                       manager=manager, outcome=outcome, terminal_id=terminal)
        for retry in range(rng.choice((1, 1, 1, 2, 3)))
    ]


def _act(
    rng: random.Random, store: AlertStore, alert_id: str, manager: Manager, created: datetime
) -> None:
    if rng.random() < 0.1:
        return
    acked = created + timedelta(seconds=rng.lognormvariate(6.3, 0.9))
    store.acknowledge(alert_id, by=manager.manager_id, via="workspace", at=acked)
    if rng.random() < 0.15:
        return
    outcome = rng.choices(RESOLUTION_OUTCOMES, weights=(8, 3, 2, 3, 2, 2))[0]
    store.resolve(
        alert_id,
        by=manager.manager_id,
        via="workspace",
        outcome=outcome,
        note=None,
        at=acked + timedelta(seconds=rng.lognormvariate(7.0, 0.8)),
    )


def _recovery(rng: random.Random, store: AlertStore, alert_id: str, failure: VipFailure) -> None:
    status = rng.choices(("recovered", "abandoned", "watching"), weights=(6, 3, 1))[0]
    with store._transaction() as conn:  # the row as the recovery watch writes it
        write_recovery_row(conn, alert_id, failure, status)


def record_sample(store: AlertStore) -> None:
    """Record the made-up week in ``store``."""
    rng = random.Random(20261207)
    for number in range(1, 121):
        # Inside the first half of a 10-minute alert window: a client's retries make one alert.
        moment = SINCE + timedelta(
            seconds=rng.randrange(int((UNTIL - SINCE).total_seconds()) - 600)
        )
        at = window_start_for(moment) + timedelta(seconds=rng.randrange(240))
        manager = rng.choice(MANAGERS)
        failures = _failures(rng, number, at, manager)
        created = at + timedelta(seconds=rng.randrange(20, 90))
        [alert_id] = store.record(failures, now=created, channels=("email",)).new_alert_ids
        _act(rng, store, alert_id, manager, created)
        if rng.random() < 0.9:
            _recovery(rng, store, alert_id, failures[0])


async def main(out: Path = OUT) -> int:
    """Write the picture to ``out``; returns the exit code."""
    executable = find_chromium()
    if executable is None:
        print("no system Chromium: apt-get install chromium", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="cardmon-report-") as scratch:
        with AlertStore(Path(scratch) / "alerts.db") as store:
            record_sample(store)
            data = gather(
                store,
                since=SINCE,
                until=UNTIL,
                zone="Europe/Paris",
                terminal_classes=("technical", "terminal", "card"),
                now=datetime(2026, 12, 7, 8, 30, tzinfo=UTC),
            )
        page_file = Path(scratch) / "report.html"
        page_file.write_text(render_html(data), encoding="utf-8")
        async with launch_chromium(executable) as browser, open_tab(browser) as tab:
            await tab.page.set_viewport_size({"width": 1000, "height": 1400})
            await tab.page.goto(page_file.as_uri())
            out.parent.mkdir(parents=True, exist_ok=True)
            await tab.page.screenshot(path=str(out), full_page=FULL_PAGE)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)))
