"""Content-derived IDs: one recipe, and the IDs already stored never change."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from monitor.ids import (
    alert_id_for,
    content_id,
    digest_id_for,
    incident_id_for,
    notice_id_for,
    summary_id_for,
)

AT = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))


@pytest.mark.parametrize(("made", "pinned"), [
    (alert_id_for("C-0001", AT), "al-flzuxctczjg7gpdrl4gr"),
    (alert_id_for("C-0001", AT.astimezone(PLUS_TWO)), "al-flzuxctczjg7gpdrl4gr"),
    (digest_id_for("M-07", date(2026, 3, 29)), "dg-p5r5wb7sbp6xkegqsike"),
    (summary_id_for("M-07", AT), "sm-nsut6v4pmsrerh4fp4ut"),
    (summary_id_for("M-07", AT.astimezone(PLUS_TWO)), "sm-n44pi2uipzaixpvpaeah"),
    (incident_id_for("terminal", "T-100", AT), "in-3jctutwaskpdd6hqm36i"),
    (incident_id_for("network", "fleet", AT.astimezone(PLUS_TWO)), "in-ofif3jta5x4g4mhjz4zb"),
    (notice_id_for("in-abc", "M-07", 2), "ic-ni3e6v4tcjsc2htgjtwn"),
], ids=["alert", "alert-offset", "digest", "summary", "summary-offset", "incident",
        "incident-offset", "notice"])
def test_ids_already_stored_stay_the_same(made: str, pinned: str) -> None:
    """Each kind of content-derived ID is byte-identical to the one computed before the refactor."""
    assert made == pinned


def test_a_content_id_is_a_prefix_and_twenty_base32_characters() -> None:
    """An ID is the prefix, a dash and 20 lower-case base32 characters: no digit run a PAN scrubber could take."""
    made = content_id("xx", "a", "b")
    assert made.startswith("xx-") and len(made) == 23
    assert set(made[3:]) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert content_id("xx", "a", "b") == made
    assert content_id("xx", "a|b") == made  # the parts are joined with "|" before hashing
    assert content_id("xx", "a", "c") != made
