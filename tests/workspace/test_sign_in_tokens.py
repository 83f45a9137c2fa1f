"""Sign-in tokens: signed, short-lived, bound to one manager, and refused for any other purpose."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.alerts.delivery.links import AckLinks
from monitor.workspace import InvalidSignInError, SignInTokens

SECRET = "workspace-secret-for-tests-0123"


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_a_token_names_its_manager_and_expiry() -> None:
    """A fresh token verifies to its manager, a random ID and an expiry max_age after signing."""
    clock = Clock()
    tokens = SignInTokens(SECRET, max_age_seconds=900, clock=clock)
    first, second = tokens.issue("RM-017"), tokens.issue("RM-017")
    claim = tokens.verify(first)
    assert claim.manager_id == "RM-017"
    assert claim.token_id != tokens.verify(second).token_id
    assert claim.expires_at - claim.signed_at == timedelta(seconds=900)


def test_an_expired_token_is_refused() -> None:
    """A token older than its lifetime is refused as expired."""
    clock = Clock()
    tokens = SignInTokens(SECRET, max_age_seconds=900, clock=clock)
    token = tokens.issue("RM-017")
    clock.now += timedelta(seconds=901)
    with pytest.raises(InvalidSignInError) as refused:
        tokens.verify(token)
    assert refused.value.reason == "expired"


@pytest.mark.parametrize("change", ["flip", "other_secret", "ack_token", "garbage"])
def test_a_tampered_or_foreign_token_is_refused(change: str) -> None:
    """A changed token, one of another secret, or an acknowledgement token is refused as invalid."""
    tokens = SignInTokens(SECRET)
    token = tokens.issue("RM-017")
    if change == "flip":
        token = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    elif change == "other_secret":
        token = SignInTokens("another-secret-0123456789").issue("RM-017")
    elif change == "ack_token":
        token = AckLinks(SECRET, "https://x.example").token("al-1", "RM-017")
    else:
        token = "not-a-token"
    with pytest.raises(InvalidSignInError) as refused:
        tokens.verify(token)
    assert refused.value.reason == "invalid"


def test_a_short_secret_is_refused() -> None:
    """A secret shorter than 16 characters cannot sign tokens."""
    with pytest.raises(ValueError, match="16 characters"):
        SignInTokens("short")
