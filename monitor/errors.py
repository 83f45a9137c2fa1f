"""The root of every error cardmon raises on purpose, and its two main branches.

``except CardmonError`` catches anything cardmon decided to refuse; the branches say
what kind of refusal it is:

* :class:`ConfigurationError` — a setting, rule file, registry or other input an
  operator wrote is wrong; the process cannot start (or reload) with it. At the command
  line it is one line naming the file and the problem (exit 1; a settings error, found
  before anything starts, exits 2). It is also a :class:`ValueError`, as it was before
  it had a base.
* :class:`StoreError` — the alert store refused or failed an operation.

Errors of one message (a malformed event) are not raised: they become rejections and
dead letters (:mod:`monitor.pipeline.decoder`, :mod:`monitor.kafka.dead_letters`).
"""

from __future__ import annotations

__all__ = ["CardmonError", "ConfigurationError", "StoreError"]


class CardmonError(Exception):
    """Something cardmon refused or could not do; the message says what, never a secret."""


class ConfigurationError(CardmonError, ValueError):
    """An operator's input (settings, rule file, registry, preference) is invalid."""


class StoreError(CardmonError):
    """The alert store refused or failed an operation."""
