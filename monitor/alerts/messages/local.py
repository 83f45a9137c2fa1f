"""The reader of a message: their :class:`~monitor.i18n.Translator` and their way of writing times.

Messages (and the workspace's pages) are written for one person: the language of their registry ``locale`` and
the times in their ``timezone``. English keeps the fixed layouts messages always had
(``Mon 06 May 2024, 08:01:30 EDT``: mail filters and tests read them); another
language writes the same facts the CLDR way (``lun. 6 mai 2024 14:01:30 CEST``,
``2024年5月6日周一 20:01:30 CST``) with the zone's abbreviation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from babel.dates import format_skeleton

from monitor.domain import Manager
from monitor.i18n import DEFAULT_LOCALE, LocaleError, Translator

__all__ = ["local_time", "reader"]

# <English strftime layout: (CLDR date skeleton or None, time skeleton or None, zone shown)>
_SKELETONS: Final[dict[str, tuple[str | None, str | None, bool]]] = {
    "%a %d %b %Y, %H:%M:%S %Z": ("yMMMEd", "Hms", True),
    "%a %d %b %Y, %H:%M %Z": ("yMMMEd", "Hm", True),
    "%a %d %b %H:%M %Z": ("MMMEd", "Hm", True),
    "%a %d %b %Y": ("yMMMEd", None, False),
    "%a %H:%M %Z": ("E", "Hm", True),
    "%H:%M:%S %Z": (None, "Hms", True),
    "%H:%M %Z": (None, "Hm", True),
    "%H:%M": (None, "Hm", False),
    "%Y-%m-%d %H:%M:%S %Z": ("yMd", "Hms", True),
    "%Y-%m-%d %H:%M %Z": ("yMd", "Hm", True),
    "%Y-%m-%d %H:%M:%S": ("yMd", "Hms", False),
    "%Y-%m-%d %H:%M": ("yMd", "Hm", False),
}


def reader(manager: Manager, locale: str | None = None, timezone: str | None = None) -> Translator:
    """The translator of ``manager`` (or of ``locale``/``timezone`` when given).

    A locale cardmon cannot read (a :class:`Manager` built by hand; the registry checks
    its own) falls back to English rather than losing the message.
    """
    zone = timezone or manager.timezone or "UTC"
    try:
        return Translator(locale or manager.locale or DEFAULT_LOCALE, zone)
    except LocaleError:
        return Translator(DEFAULT_LOCALE, zone)


def local_time(translator: Translator, moment: datetime, layout: str) -> str:
    """``moment`` in the reader's zone: ``layout`` (strftime) for English, CLDR otherwise.

    Args:
        translator: the reader.
        moment: timezone-aware.
        layout: one of the English layouts messages use (``"%H:%M %Z"``...).
    """
    local = moment.astimezone(translator.zone)
    if translator.language == "en" or layout not in _SKELETONS:
        return local.strftime(layout)
    date_skeleton, time_skeleton, zoned = _SKELETONS[layout]
    parts = [str(format_skeleton(skeleton, local, locale=translator.locale.replace("-", "_")))
             for skeleton in (date_skeleton, time_skeleton) if skeleton]
    if zoned:
        parts.append(local.strftime("%Z"))
    return " ".join(parts)
