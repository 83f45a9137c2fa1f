"""Keep secrets out of errors, logs and API answers: one place that redacts them.

cardmon holds three kinds of secret-bearing URL: the PostgreSQL store URL (a password
in its user information or a ``password=`` parameter), managers' webhook URLs and the
Alertmanager URL (``user:pass@``, a token in a query parameter or in the path), and
Apprise URLs (tokens anywhere). The rules every error path follows:

* an error a channel raises names the receiving **host** only (:func:`url_host`),
  never the URL;
* text that comes from a third party (a driver's, an HTTP client's error) passes
  through :func:`scrub_url` when the URL is known, or :func:`redact_urls` when it is
  not, before it is stored (outbox ``last_error``, served by the API), logged or
  mailed (the fallback);
* a store URL is shown through :func:`redact_url`, and a driver's message about it
  through :func:`redact_secret`.

This module imports nothing of cardmon: any layer may use it.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import parse_qsl, quote, unquote, urlsplit

__all__ = ["redact_secret", "redact_url", "redact_urls", "scrub_url", "url_host"]

#: What replaces a hidden secret.
MASK: Final = "***"
# URL-shaped text: a scheme (RFC 3986), "://", then anything up to a space or a quote.
_URL: Final = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*)://[^\s'\"<>]+")
# Shorter pieces of a secret are not hunted down on their own: they would mask
# ordinary words of the message ("db", "5432") and hide nothing worth hiding.
_MIN_PIECE: Final = 3


def _userinfo(url: str) -> tuple[str, str, str] | None:
    # (scheme://, user, password) of a URL as people type them: everything between
    # "://" and the LAST "@" is the user information, so a password with an unencoded
    # "/", "?", "#" or "@" is still found (urlsplit would stop at the first of them).
    head, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return None
    userinfo = rest.rpartition("@")[0]
    user, colon, password = userinfo.partition(":")
    return (head + sep, user, password) if colon else None


def redact_url(url: str) -> str:
    """Return a store URL fit for a log: its password replaced by ``***``.

    The user information is taken up to the last ``@``, so a password holding an
    unencoded ``/``, ``?``, ``#``, ``%`` or ``@`` is hidden whole; a ``password=``
    query parameter is redacted too. The user name, host, port and database stay.
    """
    found = _userinfo(url)
    if found is not None:
        head, user, _ = found
        url = f"{head}{user}:{MASK}@{url.partition('://')[2].rpartition('@')[2]}"
    return re.sub(r"(?i)([?&]password=)[^&#]*", rf"\1{MASK}", url)


def _forms(secret: str) -> set[str]:
    """A secret as it may appear in a message: as typed, percent-decoded or -encoded, in pieces.

    The pieces are split at the URL delimiters and ``%`` (a driver may quote a password
    as a host, a path or a "percent-encoded token").
    """
    forms = {secret, unquote(secret), quote(secret, safe="")}
    for form in list(forms):
        forms |= {piece for piece in re.split(r"[@/?#:%]", form) if len(piece) >= _MIN_PIECE}
    return forms - {""}


def _hide(text: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: no half-hidden tails
        text = text.replace(secret, MASK)
    return text


def redact_secret(text: str, url: str) -> str:
    """Return ``text`` (an error message, say) with the password of ``url`` replaced by ``***``.

    The password is hidden as typed, percent-decoded (``p%40ss`` and ``p@ss``), and in
    pieces split by an unencoded ``@``, ``/``, ``?``, ``#`` or ``:`` (which a driver may
    quote as a host, a path or a "percent-encoded token").
    """
    found = _userinfo(url)
    secrets = _forms(found[2]) if found is not None and found[2] else set()
    for value in re.findall(r"(?i)[?&]password=([^&#]*)", url):
        secrets |= _forms(value) if value else set()
    return _hide(text, secrets)


def url_host(url: str) -> str:
    """``host[:port]`` of a URL, without the user information: what an error may name.

    Returns ``"<invalid URL>"`` when the URL has no host.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if not host:
        return "<invalid URL>"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port is not None else host


def scrub_url(text: str, url: str) -> str:
    """Return ``text`` with every secret part of ``url`` hidden.

    For text from a third party about a request to ``url`` (an HTTP client's error):
    the whole URL, its user name and password, its path and fragment (webhook tokens
    often live in the path) and its query values become ``***``; then any other
    URL-shaped text is hidden by :func:`redact_urls`.
    """
    secrets: set[str] = {url}
    found = _userinfo(url)
    if found is not None:
        secrets |= _forms(found[1]) | _forms(found[2])
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is not None:
        for piece in (parts.path.strip("/"), parts.query, parts.fragment):
            if len(piece) >= _MIN_PIECE:
                secrets |= _forms(piece) | {piece}
        for _, value in parse_qsl(parts.query, keep_blank_values=False):
            if len(value) >= _MIN_PIECE:
                secrets |= _forms(value)
    return redact_urls(_hide(text, secrets - {url_host(url)}))


def redact_urls(text: str) -> str:
    """Replace every ``scheme://...`` in ``text`` by ``scheme://<redacted>``.

    For text that may quote a URL cardmon does not know (a library's log record, an
    error of unknown origin): nothing of such a URL is kept but its scheme.
    """
    return _URL.sub(r"\1://<redacted>", text)
