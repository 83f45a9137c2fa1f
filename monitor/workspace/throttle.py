"""How often sign-in links may be asked for: per person asked about and per client address.

A sign-in form that mails a link on request is a way to flood a manager's mailbox (or
the bank's relay) with real mails. :class:`SignInThrottle` bounds it with moving windows
(``limits``, in memory): :data:`PER_PERSON` links per person (the caller passes the
person's ID when the form names someone known, by ID or address alike; else the typed
text, trimmed and case-folded) and :data:`PER_ADDRESS` requests per client address. A request over either limit gets the same answer page as any other
(the form never says whether a link left) and sends nothing.

Limits: the windows live in each instance's memory, so N instances allow N times as
many, and a restart forgets them; behind a proxy every request may share the proxy's
address, which is why the per-address limit is generous. Both bound abuse, neither
identifies anybody.
"""

from __future__ import annotations

import logging
from typing import Final

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

__all__ = ["PER_ADDRESS", "PER_PERSON", "SignInThrottle"]

log = logging.getLogger("monitor.workspace")

#: A person gets at most this many links per window: a lost mail or two, then wait.
PER_PERSON: Final[RateLimitItem] = parse("3 per 10 minutes")
#: One client address asks at most this often: a branch behind one proxy has many managers.
PER_ADDRESS: Final[RateLimitItem] = parse("30 per 10 minutes")


class SignInThrottle:
    """Decides whether one more sign-in link may be sent (see the module's limits)."""

    def __init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def allow(self, who: str, address: str | None) -> bool:
        """Count one request for ``who`` from ``address``; ``False`` when either is over its limit.

        Args:
            who: the person's ID, or what the form named when nobody matches it.
            address: the client's address (``request.remote``), ``None`` if unknown.
        """
        person = who.strip().casefold()
        if not self._limiter.hit(PER_ADDRESS, "address", address or "unknown"):
            log.warning("workspace sign-in: too many link requests from one address; not sent")
            return False
        if not self._limiter.hit(PER_PERSON, "person", person):
            log.warning("workspace sign-in: too many link requests for one person; not sent")
            return False
        return True
