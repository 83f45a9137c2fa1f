"""Workspace sessions: a random ID in a cookie, stored server-side, expiring, revocable; CSRF tokens.

:class:`Sessions` opens a session after a valid sign-in: 256 random bits
(``secrets.token_urlsafe(32)``) go to the browser in a cookie; the store keeps only
their SHA-256 with the manager, the expiry and, once revoked, when
(:mod:`monitor.alerts.store.workspace`). Every request looks the session up, so a
revocation or sign-out takes effect at the next request, on every instance.

Each session has a CSRF token, ``HMAC-SHA256(key, session ID)`` with a key derived from
the workspace secret: it is put in every form and checked on every ``POST``
(:meth:`Sessions.check_csrf`). It needs no storage, differs per session and is
useless without the cookie's session.

The store's calls are synchronous; these methods run them in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from monitor.alerts.store import AlertStore

__all__ = ["Session", "Sessions", "session_hash"]

_CSRF_KEY_PURPOSE: Final = b"cardmon.workspace-csrf.v1"


def session_hash(session_id: str) -> str:
    """The hex SHA-256 of a session ID: what the store keeps instead of the ID."""
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """A live session.

    Attributes:
        session_id: the random ID (the cookie's value; never logged).
        manager_id: the signed-in person: a manager ID, or an operations person's ID.
        expires_at: when it stops working (UTC).
        csrf_token: the token every form of this session must send back.
        roles: the person's roles now (``manager``, ``team_lead``, ``operations``);
            empty until :func:`monitor.workspace.web.current_session` looks them up
            (an empty session sees nothing).
        team: for a team lead, their team's manager IDs (their own not included).
    """

    session_id: str
    manager_id: str
    expires_at: datetime
    csrf_token: str
    roles: frozenset[str] = frozenset()
    team: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return (f"Session(manager_id={self.manager_id!r}, roles={sorted(self.roles)!r}, "
                f"expires_at={self.expires_at.isoformat()})")


class Sessions:
    """Opens, finds and revokes sessions in the alert store.

    Args:
        store: the alert store (schema 6 or later).
        secret: the workspace secret (CSRF tokens are derived from it).
        max_age_seconds: a session's lifetime (seconds, > 0).
        clock: returns the current aware time; ``None`` is the system clock.
    """

    def __init__(self, store: AlertStore, secret: str, *, max_age_seconds: int = 43_200,
                 clock: Callable[[], datetime] | None = None) -> None:
        if max_age_seconds <= 0:
            raise ValueError("max_age_seconds must be positive")
        self._store = store
        self._csrf_key = hmac.new(secret.encode(), _CSRF_KEY_PURPOSE, hashlib.sha256).digest()
        self._max_age = max_age_seconds
        self._now = clock or (lambda: datetime.now(UTC))

    def __repr__(self) -> str:
        return f"Sessions(max_age_seconds={self._max_age})"

    @property
    def max_age_seconds(self) -> int:
        """A session's lifetime in seconds."""
        return self._max_age

    def csrf_token(self, session_id: str) -> str:
        """The CSRF token of a session (hex HMAC-SHA256)."""
        return hmac.new(self._csrf_key, session_id.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, session: Session, given: object) -> bool:
        """Whether ``given`` (a form field) is the session's CSRF token (constant-time)."""
        return isinstance(given, str) and hmac.compare_digest(given.encode(), session.csrf_token.encode())

    async def open(self, manager_id: str) -> Session:
        """Open a session for ``manager_id`` and store it.

        Raises:
            sqlite3.Error | psycopg.Error | StoreUnavailable: the store failed.
        """
        session_id = secrets.token_urlsafe(32)
        created_at = self._now()
        expires_at = created_at + timedelta(seconds=self._max_age)
        await asyncio.to_thread(self._store.open_session, session_hash(session_id), manager_id,
                                created_at=created_at, expires_at=expires_at)
        return Session(session_id=session_id, manager_id=manager_id, expires_at=expires_at,
                       csrf_token=self.csrf_token(session_id))

    async def find(self, session_id: str | None) -> Session | None:
        """The live session of a cookie value, or ``None`` (absent, unknown, expired, revoked)."""
        if not session_id or len(session_id) > 128:
            return None
        stored = await asyncio.to_thread(self._store.find_session, session_hash(session_id),
                                         now=self._now())
        if stored is None:
            return None
        return Session(session_id=session_id, manager_id=stored.manager_id,
                       expires_at=stored.expires_at, csrf_token=self.csrf_token(session_id))

    async def revoke(self, session: Session) -> None:
        """Revoke one session (sign-out)."""
        await asyncio.to_thread(self._store.revoke_session, session_hash(session.session_id),
                                now=self._now())

    async def revoke_manager(self, manager_id: str) -> int:
        """Revoke every live session of a manager; returns how many."""
        return await asyncio.to_thread(self._store.revoke_manager_sessions, manager_id,
                                       now=self._now())
