"""The workspace's words for the store's vocabulary: severities, states, history actions, channels.

The store keeps machine words (``high``, ``acknowledged``, ``link``); pages show them
through ``_()`` in the reader's language. Each is marked here with :func:`~monitor.i18n.N_`
so ``pybabel extract`` puts it in the catalogues (``_()`` of a variable is not extracted).
"""

from __future__ import annotations

from typing import Final

from monitor.i18n import N_

__all__ = ["WORDS"]

#: Every machine word a page shows translated, by what it names.
WORDS: Final[dict[str, tuple[str, ...]]] = {
    "severity": (N_("low"), N_("medium"), N_("high")),
    "state": (N_("open"), N_("notified"), N_("acknowledged"), N_("resolved"), N_("failed")),
    "action": (N_("opened"), N_("escalated"), N_("resent"), N_("fallback"), N_("corrected")),
    "via": (N_("workspace"), N_("link"), N_("api"), N_("cli")),
    "delivery": (N_("pending"), N_("sent"), N_("merged")),
    "incident scope": (N_("terminal"), N_("merchant"), N_("region"), N_("issuer"), N_("network")),
    "outcome class": (N_("approved"), N_("technical"), N_("terminal"), N_("card"), N_("customer"),
                      N_("fraud"), N_("unknown")),
}
