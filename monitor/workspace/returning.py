"""Where a sign-in returns to: the ``next`` path, accepted only when it stays in the workspace.

A manager who opens a workspace page without a session (the "Open in your workspace"
link of an acknowledgement page, a bookmark) is sent to the sign-in form with
``?next=`` that page; the path travels with the form, the mailed link and its button,
and after the sign-in the browser goes there instead of the alert list.

Since anyone can write a link with any ``next``, it is an open-redirect risk: only a
relative path inside the workspace is accepted (:func:`safe_next`), never a URL with a
scheme or host, a protocol-relative ``//host``, a backslash (some browsers read ``/\\``
as ``//``), a dot segment, a control character, a query or fragment, or a sign-in or
sign-out page. Anything else is dropped, and the sign-in goes to the alert list.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import quote, unquote

__all__ = ["DEFAULT_NEXT", "MAX_NEXT_CHARS", "next_query", "safe_next"]

#: Where a sign-in goes without a (safe) ``next``.
DEFAULT_NEXT: Final = "/workspace/alerts"
#: The longest ``next`` accepted (an alert page's path is far shorter).
MAX_NEXT_CHARS: Final = 300
# A workspace path of unreserved characters and %-escapes only: no scheme, host, "\",
# query, fragment, whitespace or control character can pass.
_PATH: Final = re.compile(r"/workspace/[A-Za-z0-9._~%/-]*")
_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_NOT_RETURNED_TO: Final = ("/workspace/sign-in", "/workspace/sign-out")


def safe_next(value: object) -> str | None:
    """``value`` if it is a safe place to return to after signing in, else ``None``.

    Args:
        value: a query or form field (anything: only a ``str`` can pass).

    Returns:
        The path unchanged (relative, ``/workspace/...``), or ``None``.
    """
    if not isinstance(value, str) or len(value) > MAX_NEXT_CHARS or not _PATH.fullmatch(value):
        return None
    if "//" in value or _ESCAPE.search(value):
        return None
    segments = value.split("/")
    if any(s in (".", "..") or s.lower().startswith(("%2e", ".%2e")) for s in segments):
        return None
    if value.startswith(_NOT_RETURNED_TO):
        return None
    # The same checks on the unescaped path: an escaped dot segment, control character,
    # backslash or sign-in path is refused as its plain form is.
    plain = unquote(value)
    if (any(ord(c) < 0x20 or ord(c) == 0x7F for c in plain) or "\\" in plain or "//" in plain
            or any(s in (".", "..") for s in plain.split("/")) or plain.startswith(_NOT_RETURNED_TO)):
        return None
    return value


def next_query(value: object) -> str:
    """``"?next=..."`` for a safe ``value`` (quoted for a URL), else ``""``."""
    path = safe_next(value)
    return f"?next={quote(path, safe='')}" if path is not None else ""
