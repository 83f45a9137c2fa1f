"""Signed, timestamped tokens shared by acknowledgement and sign-in links (monitor.signing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.signing import InvalidSignedTokenError, TimedTokens

SECRET = "s" * 16


def test_a_token_round_trips_with_its_signing_time() -> None:
    """A token signed now gives back its payload and the time it was signed."""
    at = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    tokens = TimedTokens(SECRET, salt="a", max_age_seconds=60, what="test", clock=lambda: at)
    data, signed_at = tokens.loads(tokens.dumps({"m": "RM1"}), expired="old", invalid="bad")
    assert data == {"m": "RM1"} and signed_at == at


def test_expired_foreign_and_malformed_tokens_are_refused_with_their_reason() -> None:
    """An old token is 'expired'; another salt's, a tampered or a non-object one is 'invalid'."""
    now = [datetime(2026, 12, 7, 9, 0, tzinfo=UTC)]
    tokens = TimedTokens(SECRET, salt="a", max_age_seconds=60, what="test", clock=lambda: now[0])
    other = TimedTokens(SECRET, salt="b", max_age_seconds=60, what="test", clock=lambda: now[0])
    token = tokens.dumps({"m": "RM1"})
    for bad in (other.dumps({"m": "RM1"}), token[:-2] + "xx", "not-a-token"):
        with pytest.raises(InvalidSignedTokenError, match="bad") as refused:
            tokens.loads(bad, expired="old", invalid="bad")
        assert refused.value.reason == "invalid"
    now[0] += timedelta(seconds=61)
    with pytest.raises(InvalidSignedTokenError, match="old") as refused:
        tokens.loads(token, expired="old", invalid="bad")
    assert refused.value.reason == "expired"


def test_a_short_secret_or_a_non_positive_age_is_refused() -> None:
    """Secrets under 16 characters and ages of 0 or less are configuration errors."""
    with pytest.raises(ValueError, match="the test secret must be at least 16"):
        TimedTokens("short", salt="a", max_age_seconds=60, what="test")
    with pytest.raises(ValueError, match="max_age_seconds"):
        TimedTokens(SECRET, salt="a", max_age_seconds=0, what="test")
