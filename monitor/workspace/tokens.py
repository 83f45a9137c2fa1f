"""Sign-in tokens: signed (``itsdangerous``), short-lived, bound to one manager, single-use.

A token is ``URLSafeTimedSerializer`` output over ``{"t": token_id, "m": manager_id}``
and the time it was signed, with the salt :data:`SIGN_IN_SALT` (a token signed for
another purpose with the same secret is refused). ``token_id`` is 128 random bits: the
store records it when the token is used (:meth:`AlertStore.use_sign_in_token`), so a
link signs in once. The payload is readable; it holds no PAN and no client data.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from monitor.signing import InvalidSignedTokenError, TimedTokens

__all__ = ["SIGN_IN_SALT", "InvalidSignInError", "SignInClaim", "SignInTokens"]

#: Salt of sign-in tokens; acknowledgement links and CSRF tokens use other ones.
SIGN_IN_SALT: Final = "cardmon.workspace-sign-in.v1"


class InvalidSignInError(InvalidSignedTokenError):
    """A sign-in token was refused.

    Attributes:
        reason: ``"expired"``, ``"invalid"`` (tampered, another secret or purpose,
            malformed) or ``"used"`` (it signed in before).
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class SignInClaim:
    """What a valid sign-in token vouches for.

    Attributes:
        token_id: the token's random ID (recorded when used).
        manager_id: the manager it was sent to.
        signed_at: when it was signed (UTC).
        expires_at: when it stops working (UTC).
    """

    token_id: str
    manager_id: str
    signed_at: datetime
    expires_at: datetime


class SignInTokens:
    """Makes and checks sign-in tokens (the single use is the store's, see the module).

    Args:
        secret: the signing secret (``workspace.secret``), at least 16 characters.
        max_age_seconds: how long a token is accepted after signing (> 0).
        clock: returns the current aware time; ``None`` is the system clock.

    Raises:
        ValueError: a short secret or a non-positive age.
    """

    def __init__(self, secret: str, *, max_age_seconds: int = 900,
                 clock: Callable[[], datetime] | None = None) -> None:
        self._tokens = TimedTokens(secret, salt=SIGN_IN_SALT, max_age_seconds=max_age_seconds,
                                   what="workspace", clock=clock)
        self._max_age = max_age_seconds

    def __repr__(self) -> str:
        return f"SignInTokens(max_age_seconds={self._max_age})"

    @property
    def max_age_seconds(self) -> int:
        """Seconds a token stays valid after signing."""
        return self._max_age

    def issue(self, manager_id: str) -> str:
        """Return a new URL-safe token for ``manager_id``, signed now, with a fresh random ID."""
        return self._tokens.dumps({"t": secrets.token_urlsafe(16), "m": manager_id})

    def verify(self, token: str) -> SignInClaim:
        """Check a token's signature and age (not whether it was used: the store says that).

        Raises:
            InvalidSignInError: expired, tampered, another secret or purpose, malformed.
        """
        data, signed_at = self._tokens.loads(token, expired="this sign-in link has expired",
                                             invalid="this sign-in link is not valid",
                                             error=InvalidSignInError)
        if not isinstance(data.get("t"), str) \
                or not isinstance(data.get("m"), str) or not data["t"] or not data["m"]:
            raise InvalidSignInError("invalid", "this sign-in link is not valid")
        return SignInClaim(token_id=data["t"], manager_id=data["m"], signed_at=signed_at,
                           expires_at=signed_at + timedelta(seconds=self._max_age))
