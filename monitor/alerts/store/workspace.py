"""The managers' workspace in the alert store: used sign-in tokens and sessions.

A part of :class:`~monitor.alerts.store.AlertStore` (schema 6). What a token or a
session *is* lives in :mod:`monitor.workspace`; this module only persists:

- a sign-in token's ID is recorded when it is used; a second use finds the row and
  is refused (``INSERT ... ON CONFLICT DO NOTHING RETURNING``: of two instances racing
  on one link, exactly one signs in);
- a session is stored by the SHA-256 of its random ID (a copy of the table holds no
  usable cookie), with its manager, its expiry and, once revoked, when.

Rows past their expiry are refused by the signature (tokens) or the expiry (sessions);
:meth:`WorkspaceQueries.purge_expired_sign_ins` deletes them. It is the only
statement here that needs ``DELETE``: signing in and out work with a role that may
only read, insert and update (``docs/alert-store.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from monitor.alerts.store.connection import StoreConnection, retried
from monitor.alerts.store.rows import parse_utc, utc_text

__all__ = ["StoredSession", "WorkspaceQueries"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredSession:
    """A live workspace session as stored.

    Attributes:
        manager_id: whose session it is.
        created_at: when it was opened (UTC).
        expires_at: when it stops working (UTC).
    """

    manager_id: str
    created_at: datetime
    expires_at: datetime


class WorkspaceQueries(StoreConnection):
    """Sign-in tokens and sessions of :class:`~monitor.alerts.store.AlertStore`."""

    @retried
    def use_sign_in_token(self, token_id: str, manager_id: str, *, expires_at: datetime,
                          now: datetime) -> bool:
        """Record a sign-in token as used; ``False`` if it was used before.

        Args:
            token_id: the token's random ID (from its signed payload).
            manager_id: the manager it was issued to.
            expires_at: when the token expires (aware); the row is kept until then.
            now: the current time (aware).

        Returns:
            ``True`` for the first use, ``False`` for any later one.
        """
        with self._transaction() as conn:
            row = conn.execute(
                "INSERT INTO sign_in_tokens (token_id, manager_id, used_at, expires_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING token_id",
                (token_id, manager_id, utc_text(now), utc_text(expires_at)),
            ).fetchone()
        return row is not None

    def sign_in_token_used(self, token_id: str) -> bool:
        """Whether a sign-in token was used already (a read: the link's page says so before its button)."""
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM sign_in_tokens WHERE token_id = ?",
                                     (token_id,)).fetchone()
        return row is not None

    @retried
    def open_session(self, session_hash: str, manager_id: str, *, created_at: datetime,
                     expires_at: datetime) -> None:
        """Store a new session (its ID's SHA-256 hex)."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO workspace_sessions (session_hash, manager_id, created_at, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (session_hash, manager_id, utc_text(created_at), utc_text(expires_at)),
            )

    def find_session(self, session_hash: str, *, now: datetime) -> StoredSession | None:
        """The session with this hash if it is neither expired nor revoked, else ``None``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT manager_id, created_at, expires_at FROM workspace_sessions "
                "WHERE session_hash = ? AND revoked_at IS NULL AND expires_at > ?",
                (session_hash, utc_text(now)),
            ).fetchone()
        if row is None:
            return None
        return StoredSession(manager_id=row["manager_id"], created_at=parse_utc(row["created_at"]),
                             expires_at=parse_utc(row["expires_at"]))

    @retried
    def revoke_session(self, session_hash: str, *, now: datetime) -> bool:
        """Revoke one session; ``False`` if it was unknown or already revoked."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE workspace_sessions SET revoked_at = ? "
                "WHERE session_hash = ? AND revoked_at IS NULL", (utc_text(now), session_hash))
            return cursor.rowcount > 0

    @retried
    def revoke_manager_sessions(self, manager_id: str, *, now: datetime) -> int:
        """Revoke every live session of a manager; returns how many were revoked."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE workspace_sessions SET revoked_at = ? "
                "WHERE manager_id = ? AND revoked_at IS NULL AND expires_at > ?",
                (utc_text(now), manager_id, utc_text(now)))
            return cursor.rowcount

    @retried
    def purge_expired_sign_ins(self, *, now: datetime) -> int:
        """Delete used tokens and sessions past their expiry; returns how many rows went."""
        with self._transaction() as conn:
            tokens = conn.execute("DELETE FROM sign_in_tokens WHERE expires_at < ?",
                                  (utc_text(now),)).rowcount
            sessions = conn.execute("DELETE FROM workspace_sessions WHERE expires_at < ?",
                                    (utc_text(now),)).rowcount
        return tokens + sessions
