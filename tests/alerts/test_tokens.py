"""Signed, expiring acknowledgement links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from itsdangerous import URLSafeTimedSerializer

from monitor.alerts.delivery.links import ACK_SALT, AckLinks, InvalidTokenError

SECRET = "k9-test-secret-of-32-characters!"
T0 = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)


class Clock:
    """A settable clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _token(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def test_a_link_points_at_the_alert_and_carries_the_manager() -> None:
    """The URL is {public_url}/alerts/{id}/ack?token=… and the token verifies to the alert and the manager."""
    links = AckLinks(SECRET, "https://cardmon.bank.example/", clock=Clock(T0))
    url = links.url("al-abc", "RM-017")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "cardmon.bank.example", "/alerts/al-abc/ack")
    claim = links.verify(_token(url), "al-abc")
    assert (claim.alert_id, claim.manager_id, claim.signed_at) == ("al-abc", "RM-017", T0)


def test_a_token_expires_after_its_max_age() -> None:
    """A token is accepted up to 48 hours after signing and refused as expired after that."""
    clock = Clock(T0)
    links = AckLinks(SECRET, "https://cardmon.bank.example", clock=clock)
    token = links.token("al-abc", "RM-017")
    clock.now = T0 + timedelta(hours=48)
    assert links.verify(token, "al-abc").manager_id == "RM-017"
    clock.now = T0 + timedelta(hours=48, seconds=2)
    with pytest.raises(InvalidTokenError, match="expired") as caught:
        links.verify(token, "al-abc")
    assert caught.value.reason == "expired"


def test_a_tampered_token_is_refused() -> None:
    """Changing one character of the payload or the signature invalidates the token."""
    links = AckLinks(SECRET, "https://cardmon.bank.example")
    token = links.token("al-abc", "RM-017")
    for position in (2, len(token) - 2):
        flipped = "A" if token[position] != "A" else "B"
        tampered = token[:position] + flipped + token[position + 1:]
        with pytest.raises(InvalidTokenError) as caught:
            links.verify(tampered, "al-abc")
        assert caught.value.reason == "invalid"


def test_a_token_for_another_alert_or_from_another_secret_or_purpose_is_refused() -> None:
    """A valid token for alert A does not acknowledge alert B; another secret or salt does not verify."""
    links = AckLinks(SECRET, "https://cardmon.bank.example")
    with pytest.raises(InvalidTokenError) as wrong_alert:
        links.verify(links.token("al-abc", "RM-017"), "al-xyz")
    assert wrong_alert.value.reason == "wrong_alert"
    other = AckLinks("another-secret-of-32-characters!", "https://cardmon.bank.example")
    with pytest.raises(InvalidTokenError):
        links.verify(other.token("al-abc", "RM-017"), "al-abc")
    other_purpose = URLSafeTimedSerializer(SECRET, salt="cardmon.something-else")
    with pytest.raises(InvalidTokenError):
        links.verify(str(other_purpose.dumps({"a": "al-abc", "m": "RM-017"})), "al-abc")
    same_purpose = URLSafeTimedSerializer(SECRET, salt=ACK_SALT)
    assert links.verify(str(same_purpose.dumps({"a": "al-abc", "m": "RM-017"})), "al-abc")


def test_a_short_secret_is_refused() -> None:
    """A secret under 16 characters is a configuration error."""
    with pytest.raises(ValueError, match="16 characters"):
        AckLinks("short", "https://cardmon.bank.example")
