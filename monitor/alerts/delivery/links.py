"""Signed, expiring acknowledgement links (``itsdangerous``).

Every notification carries ``{public_url}/alerts/{alert_id}/ack?token=...``. The
token is an ``itsdangerous.URLSafeTimedSerializer`` signature (HMAC-SHA1 over a
key derived from the secret and a per-purpose salt) of ``{"a": alert_id, "m":
manager_id}`` plus the time it was signed; it is accepted for ``max_age_seconds``
after that. The salt names the purpose, so a token signed for one purpose (an
acknowledgement) is never valid for another one signed with the same secret.

A token is a bearer credential for one action on one alert by one manager: it
holds no PAN and no customer data (the payload is readable, only its integrity is
protected).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from urllib.parse import quote, urlencode

from monitor.signing import InvalidSignedTokenError, TimedTokens

__all__ = ["ACK_SALT", "AckClaim", "AckLinks", "InvalidTokenError"]

#: Salt of acknowledgement tokens; another purpose gets another salt.
ACK_SALT: Final = "cardmon.alert-ack.v1"
#: Two days: long enough for a manager back from a weekend, short enough that an
#: old mail in a forwarded thread stops working.
DEFAULT_MAX_AGE_SECONDS: Final = 48 * 3600


class InvalidTokenError(InvalidSignedTokenError):
    """An acknowledgement token was refused.

    Attributes:
        reason: ``"expired"``, ``"invalid"`` (tampered, wrong secret or purpose,
            malformed) or ``"wrong_alert"`` (signed for another alert).
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class AckClaim:
    """What a valid acknowledgement token vouches for.

    Attributes:
        alert_id: the alert the link was sent about.
        manager_id: the manager the link was sent to (who acknowledges).
        signed_at: when the token was signed (UTC).
    """

    alert_id: str
    manager_id: str
    signed_at: datetime


class AckLinks:
    """Makes and checks acknowledgement links.

    Args:
        secret: the signing secret (keep it in a ``SecretStr`` until here); at least
            16 characters.
        public_url: the base URL managers reach the API at
            (``https://cardmon.bank.example``); a trailing ``/`` is ignored.
        max_age_seconds: how long a token is accepted after signing (seconds, > 0).
        clock: returns the current aware time; ``None`` is the system clock (tests
            inject one to sign in the past or check after expiry).

    Raises:
        ValueError: a short secret, an empty URL or a non-positive age.
    """

    def __init__(
        self,
        secret: str,
        public_url: str,
        *,
        max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not public_url:
            raise ValueError("public_url is required to build acknowledgement links")
        self._tokens = TimedTokens(secret, salt=ACK_SALT, max_age_seconds=max_age_seconds,
                                   what="acknowledgement link", clock=clock)
        self._public_url = public_url.rstrip("/")
        self._max_age = max_age_seconds

    def __repr__(self) -> str:
        return f"AckLinks(public_url={self._public_url!r}, max_age_seconds={self._max_age})"

    @property
    def max_age_seconds(self) -> int:
        """Seconds a token stays valid after signing."""
        return self._max_age

    def token(self, alert_id: str, manager_id: str) -> str:
        """Return a URL-safe token binding ``alert_id`` to ``manager_id``, signed now."""
        return self._tokens.dumps({"a": alert_id, "m": manager_id})

    def url(self, alert_id: str, manager_id: str) -> str:
        """Return ``{public_url}/alerts/{alert_id}/ack?token=...`` for this manager."""
        token = self.token(alert_id, manager_id)
        return f"{self._public_url}/alerts/{quote(alert_id, safe='')}/ack?{urlencode({'token': token})}"

    def verify(self, token: str, alert_id: str) -> AckClaim:
        """Check a token for ``alert_id``.

        Args:
            token: the ``token`` query parameter.
            alert_id: the alert of the URL path; the token must have been signed for it.

        Returns:
            The :class:`AckClaim` the token carries.

        Raises:
            InvalidTokenError: expired, tampered, signed with another secret or salt,
                malformed, or signed for another alert.
        """
        data, signed_at = self._tokens.loads(
            token, expired=f"this acknowledgement link expired (links last {_duration(self._max_age)})",
            invalid="this acknowledgement link is not valid", error=InvalidTokenError)
        if not isinstance(data.get("a"), str) or not isinstance(data.get("m"), str):
            raise InvalidTokenError("invalid", "this acknowledgement link is not valid")
        if data["a"] != alert_id:
            raise InvalidTokenError("wrong_alert", "this acknowledgement link is for another alert")
        return AckClaim(alert_id=data["a"], manager_id=data["m"], signed_at=signed_at)


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour" + ("s" if hours != 1 else "")
    return f"{seconds} seconds"
