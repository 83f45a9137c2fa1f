"""A small what-if world shared by the what-if tests: two VIP clients, two managers, six events.

Counted by hand (all 2026-03-02 UTC unless said; windows of 600 s):

* C1 (platinum, manager M1: e-mail, digest at 18:00 UTC): an expired card (54, class
  ``card``) at 10:00, an approval at 10:01, an issuer failure (91, ``technical``) at
  10:30, another expired card on 2026-03-03 at 09:00;
* C2 (gold, manager M2: webhook, no digest): a fraud stop (59) at 10:05 and
  insufficient funds (51, ``customer``, which gold never alerts on) at 10:06.

The current rules (``rules/``) alert on all of them but the funds: M1 gets 3 alerts,
3 notifications and 2 digests (one per day), M2 1 alert, 1 notification. The
proposed rules (:func:`write_proposed`) stop platinum alerting on ``card`` and make
fraud ``medium``: M1 keeps the 10:30 alert only (1 digest), C2's alert turns medium.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from monitor.ids import alert_id_for
from monitor.paths import rules_path
from simulators.sources.replay import write_recording
from tests.helpers import event, write_registry

__all__ = ["C1_CARD_DAY1", "C1_CARD_DAY2", "C1_TECHNICAL", "C2_FRAUD", "write_proposed", "write_world"]

C1_CARD_DAY1 = alert_id_for("C1", datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
C1_TECHNICAL = alert_id_for("C1", datetime(2026, 3, 2, 10, 30, tzinfo=UTC))
C1_CARD_DAY2 = alert_id_for("C1", datetime(2026, 3, 3, 9, 0, tzinfo=UTC))
C2_FRAUD = alert_id_for("C2", datetime(2026, 3, 2, 10, 0, tzinfo=UTC))


def write_world(folder: Path) -> tuple[Path, Path]:
    """Write the registry (``folder/registry``) and the recording (``folder/recording.jsonl``).

    Returns:
        ``(registry folder, recording path)``; the recording is in file order
        (not time order: the what-if sorts it).
    """
    write_registry(
        folder / "registry",
        "customer_id,name,tier,manager_id,card_refs\n"
        "C1,Ada Lovelace,platinum,M1,card-1\n"
        "C2,Alan Turing,gold,M2,card-2",
        "manager_id,name,email,phone,webhook_url,backup_manager_id,timezone,digest_at\n"
        "M1,Mary Major,mary@example.com,,,,UTC,18:00\n"
        "M2,Bob Minor,,,https://hooks.example/m2,,UTC,",
    )
    events = [
        event("e6", occurred_at="2026-03-03T09:00:00+00:00", card_ref="card-1", response_code="54"),
        event("e1", occurred_at="2026-03-02T10:00:00+00:00", card_ref="card-1", response_code="54"),
        event("e5", occurred_at="2026-03-02T10:01:00+00:00", card_ref="card-1", response_code="00"),
        event("e3", occurred_at="2026-03-02T10:05:00+00:00", card_ref="card-2", response_code="59",
              terminal_id="POS00007", channel="POS", txn_type="purchase"),
        event("e4", occurred_at="2026-03-02T10:06:00+00:00", card_ref="card-2", response_code="51",
              terminal_id="POS00007", channel="POS", txn_type="purchase"),
        event("e2", occurred_at="2026-03-02T10:30:00+00:00", card_ref="card-1", response_code="91"),
    ]
    recording = folder / "recording.jsonl"
    write_recording(events, recording)
    return folder / "registry", recording


def write_proposed(folder: Path) -> Path:
    """Write the proposed ``alerting.yaml`` (platinum without ``card``, fraud ``medium``) alone in ``folder``."""
    text = rules_path("alerting.yaml").read_text(encoding="utf-8")
    changed = (text.replace("alert_on: [technical, terminal, fraud, card, unknown]",
                            "alert_on: [technical, terminal, fraud, unknown]")
               .replace("fraud: high       #", "fraud: medium     #"))
    assert changed.count("\n") == text.count("\n") and changed != text
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "alerting.yaml").write_text(changed, encoding="utf-8")
    return folder
