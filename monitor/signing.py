"""Signed, timestamped tokens (``itsdangerous``): what acknowledgement links and sign-in links share.

A token is ``itsdangerous.URLSafeTimedSerializer`` output: a readable payload, the
time it was signed and an HMAC over both with a key derived from the secret and a
per-purpose *salt*, so a token signed for one purpose is never valid for another
signed with the same secret. The payload's integrity is protected, not its secrecy:
it must hold no PAN and no client data.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from itsdangerous import BadData, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from monitor.errors import CardmonError

__all__ = ["MIN_SECRET_CHARS", "InvalidSignedTokenError", "TimedTokens"]

#: Fewest characters of a signing secret (a shorter one is refused).
MIN_SECRET_CHARS: Final = 16


class InvalidSignedTokenError(CardmonError):
    """A signed token was refused.

    Attributes:
        reason: why, in a word the caller defines (``"expired"``, ``"invalid"``, ...).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TimedTokens:
    """Signs payloads and checks their signature and age, for one purpose (salt).

    Args:
        secret: the signing secret, at least :data:`MIN_SECRET_CHARS` characters.
        salt: the purpose (tokens of another salt are refused).
        max_age_seconds: how long a token is accepted after signing (> 0).
        what: what the secret is for, in the error of a short secret.
        clock: returns the current aware time (signing and the age check both read
            it); ``None`` is the system clock.

    Raises:
        ValueError: a short secret or a non-positive age.
    """

    def __init__(self, secret: str, *, salt: str, max_age_seconds: int, what: str,
                 clock: Callable[[], datetime] | None = None) -> None:
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(f"the {what} secret must be at least {MIN_SECRET_CHARS} characters")
        if max_age_seconds <= 0:
            raise ValueError("max_age_seconds must be positive")
        now = clock or (lambda: datetime.now(UTC))

        class _Signer(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(now().timestamp())

        self._serializer = URLSafeTimedSerializer(secret, salt=salt, signer=_Signer)
        self.max_age_seconds = max_age_seconds

    def dumps(self, payload: dict[str, str]) -> str:
        """The URL-safe token of ``payload``, signed now."""
        return str(self._serializer.dumps(payload))

    def loads(self, token: str, *, expired: str, invalid: str,
              error: type[InvalidSignedTokenError] = InvalidSignedTokenError
              ) -> tuple[dict[str, Any], datetime]:
        """The payload of a valid token and when it was signed (UTC).

        Args:
            token: the token as received.
            expired: the error message for a token older than ``max_age_seconds``.
            invalid: the error message for a tampered, foreign or malformed one.
            error: the error class raised (the caller's subclass).

        Raises:
            InvalidSignedTokenError: (``error``) reason ``"expired"`` or ``"invalid"``
                (also when the payload is not a JSON object).
        """
        try:
            data, signed_at = self._serializer.loads(token, max_age=self.max_age_seconds,
                                                     return_timestamp=True)
        except SignatureExpired as caught:
            raise error("expired", expired) from caught
        except BadData as caught:
            raise error("invalid", invalid) from caught
        if not isinstance(data, dict):
            raise error("invalid", invalid)
        return data, signed_at
