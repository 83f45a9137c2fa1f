"""The store's row helpers: one time format, bounded and PAN-scrubbed text from people."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from monitor.alerts.store import rows
from monitor.alerts.store.rows import (
    clean_actor,
    clean_note,
    clean_via,
    parse_utc,
    scrubbed,
    utc_text,
)

PAN = "4111111111111111"


def test_times_are_stored_as_fixed_width_utc_text() -> None:
    """An aware time is stored in UTC with microseconds, so text order is time order, and reads back equal."""
    local = datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    text = utc_text(local)
    assert text == "2026-03-01T07:30:00.000000+00:00"
    assert parse_utc(text) == local
    assert utc_text(datetime(2026, 3, 1, 7, 30, 0, 1, tzinfo=UTC)) > text


def test_a_naive_time_is_refused() -> None:
    """A time without a zone never reaches the store."""
    with pytest.raises(ValueError, match="naive"):
        utc_text(datetime(2026, 3, 1, 9, 30))


def test_text_from_people_is_pan_scrubbed() -> None:
    """A card number typed into a note or a name is masked before it is stored."""
    assert PAN not in scrubbed(f"card {PAN} declined")
    assert PAN not in (clean_note(f"called about {PAN}") or "")
    assert PAN not in clean_actor(f"ops {PAN}")


def test_notes_are_stripped_bounded_and_blank_is_none() -> None:
    """A blank note is no note; a long one keeps its first 2,000 characters."""
    assert clean_note(None) is None
    assert clean_note("   ") is None
    assert clean_note("  done  ") == "done"
    assert len(clean_note("x" * 5000) or "") == 2000


def test_actor_and_channel_names_are_checked() -> None:
    """Who did it is 1 to 200 characters; the channel is a short lower-case name."""
    assert clean_actor(" rm-001 ") == "rm-001"
    for bad in ("", "   ", "x" * 201):
        with pytest.raises(ValueError):
            clean_actor(bad)
    assert clean_via("apprise:0") == "apprise:0"
    for bad in ("", "API", "a b", "x" * 40):
        with pytest.raises(ValueError):
            clean_via(bad)


def test_a_clean_text_is_remembered_and_a_text_with_a_pan_never_is() -> None:
    """A short text free of PANs is kept to skip its next scan; a text holding a PAN is masked every time and never kept."""
    clean, dirty = "Call the client: the ATM kept the card", f"card {PAN} declined"
    for _ in range(3):
        assert scrubbed(clean) == clean
        assert PAN not in scrubbed(dirty) and "411111******1111" in scrubbed(dirty)
    assert clean in rows._CLEAN_TEXTS
    assert not any(PAN in text for text in rows._CLEAN_TEXTS), "no raw PAN is held in memory by the cache"
    long_text = "x" * (rows._CLEAN_TEXT_CHARS + 1)
    assert scrubbed(long_text) == long_text and long_text not in rows._CLEAN_TEXTS
