"""The manager's language: message catalogues, and dates, times and money as their locale writes them.

A foundation (it imports only :mod:`monitor.errors`), built on Babel:

* :data:`LANGUAGES` are the languages cardmon speaks: ``en`` (the source text),
  ``fr`` and ``zh-Hans``. A manager's ``locale`` (registry column, BCP 47 such as
  ``fr``, ``fr-CA``, ``zh-Hans``, ``zh-CN``) is checked by :func:`check_locale`: its
  language picks the catalogue, the whole tag picks how numbers and dates are written
  (``fr-CA`` reads French text with Canadian formats).
* Catalogues are ``monitor/locale/<catalogue>/LC_MESSAGES/messages.po`` (gettext
  PO, ``zh_Hans`` for ``zh-Hans``), compiled in memory the first time a language is used
  (:func:`translations`), so a fresh clone works without a build step and no binary
  ``.mo`` file is committed. A fuzzy or empty entry falls back to English.
* :class:`Translator` is one reader's view: ``gettext``/``ngettext`` with
  ``%(name)s`` parameters, and :meth:`~Translator.datetime`, :meth:`~Translator.money`
  (integer minor units, the currency's ISO 4217 exponent from CLDR: JPY 0, EUR 2, KWD 3)
  and :meth:`~Translator.duration` in the reader's locale and time zone.
* Rule files carry their own translations (``translations: {fr: ..., zh-Hans: ...}``
  per entry, :class:`RuleTexts` validates one); their loaders call
  :func:`remember_rule_text`, and :meth:`Translator.rule_text` turns the English
  text an alert carries (a response code's meaning, a suggested action) into the
  reader's language, or leaves it in English when the rule files have no translation.

Marking text: Python code calls ``translator.gettext("...")`` (or marks a constant with
:func:`N_` and translates it where it is shown); templates call ``_("...")``. To add or
change text: ``pybabel extract -F babel.cfg -o monitor/locale/messages.pot .`` then
``pybabel update -i monitor/locale/messages.pot -d monitor/locale``, translate the new
entries in each ``messages.po`` (``tests/test_i18n.py`` fails on one left empty).
"""

from __future__ import annotations

import gettext as _gettext
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.core import negotiate_locale
from babel.dates import format_datetime as _format_datetime
from babel.dates import format_timedelta as _format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency as _format_currency
from babel.numbers import get_currency_precision
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from monitor.errors import ConfigurationError

__all__ = [
    "CATALOGUE_DIR",
    "DEFAULT_LOCALE",
    "LANGUAGES",
    "N_",
    "LocaleError",
    "RuleTexts",
    "Translator",
    "check_locale",
    "format_datetime",
    "format_duration",
    "format_money",
    "language_of",
    "negotiate",
    "remember_rule_text",
    "rule_text",
    "translations",
]

#: The languages cardmon speaks (BCP 47), the source language first.
LANGUAGES: Final[tuple[str, ...]] = ("en", "fr", "zh-Hans")
#: The locale of a manager whose registry row names none, and of a page before sign-in
#: when the browser asks for no language cardmon speaks.
DEFAULT_LOCALE: Final = "en"
#: Where the PO catalogues live (one folder per translated language, gettext layout).
CATALOGUE_DIR: Final = Path(__file__).with_name("locale")
# <BCP 47 language: gettext catalogue folder>; English is the source text (no catalogue).
_CATALOGUES: Final = {"fr": "fr", "zh-Hans": "zh_Hans"}


class LocaleError(ConfigurationError):
    """A locale tag is not BCP 47, or names a language cardmon has no catalogue for."""


def N_(message: str) -> str:  # the gettext convention: mark now, translate where shown
    """Mark ``message`` for the catalogue without translating it (translate it where it is shown)."""
    return message


def _parse(tag: str) -> Locale:
    try:
        return Locale.parse(tag.strip().replace("_", "-"), sep="-")
    except (UnknownLocaleError, ValueError, TypeError) as error:
        raise LocaleError(f"unknown locale {tag!r}: not a BCP 47 tag CLDR knows "
                          f"(cardmon speaks {', '.join(LANGUAGES)})") from error


def language_of(tag: str) -> str:
    """The language of :data:`LANGUAGES` a locale reads (``fr-CA`` → ``fr``, ``zh-CN`` → ``zh-Hans``).

    Raises:
        LocaleError: not a locale CLDR knows, or a language without a catalogue
            (``de``, ``zh-Hant``).
    """
    locale = _parse(tag)
    if locale.language == "zh":
        script = locale.script or Locale.parse(f"zh_{locale.territory}" if locale.territory else "zh").script
        if script in (None, "Hans"):
            return "zh-Hans"
    elif locale.language in ("en", "fr"):
        return locale.language
    raise LocaleError(f"locale {tag!r} is a language cardmon has no catalogue for "
                      f"(it speaks {', '.join(LANGUAGES)})")


def check_locale(tag: str | None) -> str:
    """A manager's locale, checked: the tag as written (``fr-CA``), or :data:`DEFAULT_LOCALE` for none.

    Raises:
        LocaleError: see :func:`language_of`.
    """
    if tag is None or not tag.strip():
        return DEFAULT_LOCALE
    tag = tag.strip().replace("_", "-")
    language_of(tag)
    return tag


def negotiate(accept_language: str | None) -> str:
    """The language of :data:`LANGUAGES` a browser's ``Accept-Language`` prefers (default English).

    Args:
        accept_language: the header (``fr-FR,fr;q=0.9,en;q=0.8``), ``None`` if absent.

    Returns:
        One of :data:`LANGUAGES`.
    """
    preferred: list[tuple[float, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and tag != "*" and quality > 0:
            preferred.append((-quality + position * 1e-6, tag.strip()))
    # Language tags are case-insensitive (RFC 5646 2.1.1): compare them lower-cased.
    available = {"en": "en", "fr": "fr", "zh-hans": "zh-Hans", "zh": "zh-Hans", "zh-cn": "zh-Hans",
                 "zh-sg": "zh-Hans"}
    chosen = negotiate_locale([tag.lower() for _, tag in sorted(preferred)], list(available), sep="-")
    return available.get(chosen.lower(), DEFAULT_LOCALE) if chosen else DEFAULT_LOCALE


@cache
def translations(language: str) -> _gettext.NullTranslations:
    """The compiled catalogue of one of :data:`LANGUAGES` (English: the source text itself).

    Compiled from its PO file in memory, once per process; fuzzy entries are left out.

    Raises:
        LocaleError: a language that is not in :data:`LANGUAGES`.
    """
    if language == "en":
        return _gettext.NullTranslations()
    folder = _CATALOGUES.get(language)
    if folder is None:
        raise LocaleError(f"no catalogue for {language!r}")
    path = CATALOGUE_DIR / folder / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po:
        catalog = read_po(po, locale=folder)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return _gettext.GNUTranslations(compiled)


def format_money(amount_minor: int, currency: str, locale: str = DEFAULT_LOCALE) -> str:
    """Integer minor units as the locale writes money: ``13409, "EUR", "fr"`` → ``"134,09 €"``.

    Args:
        amount_minor: amount in minor units of ``currency``.
        currency: ISO 4217 code; its exponent comes from CLDR (JPY 0, EUR 2, KWD 3).
        locale: BCP 47 tag of the reader.
    """
    amount = Decimal(amount_minor).scaleb(-get_currency_precision(currency))
    return str(_format_currency(amount, currency, locale=_parse(locale)))


def format_datetime(moment: datetime, zone: str | ZoneInfo, locale: str = DEFAULT_LOCALE,
                    form: str = "medium") -> str:
    """An aware instant as the locale writes it, in ``zone`` (``"5 déc. 2026, 10:00:00"``).

    Args:
        moment: timezone-aware.
        zone: IANA zone name or zone; an unknown name falls back to UTC.
        locale: BCP 47 tag of the reader.
        form: ``short``, ``medium``, ``long``, ``full`` or a CLDR pattern.

    Raises:
        ValueError: ``moment`` is naive.
    """
    if moment.tzinfo is None:
        raise ValueError("format_datetime needs a timezone-aware datetime")
    return str(_format_datetime(moment, form, tzinfo=_zone(zone), locale=_parse(locale)))


def format_duration(delta: timedelta, locale: str = DEFAULT_LOCALE) -> str:
    """A duration in words, rounded to its largest unit (``"3 minutes"``, ``"3 分钟"``)."""
    return str(_format_timedelta(delta, locale=_parse(locale), threshold=1.0))


def _zone(zone: str | ZoneInfo) -> ZoneInfo:
    if isinstance(zone, ZoneInfo):
        return zone
    try:
        return ZoneInfo(zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


# --- translations carried by the rule files -----------------------------------------

_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class RuleTexts(BaseModel):
    """One rule entry's texts in the languages other than English (each one required).

    The rule files write it as ``translations: {fr: ..., zh-Hans: ...}``, each value a
    text or a mapping of field name to text (``{meaning: ..., action: ...}``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    fr: _Text | dict[str, _Text]
    zh_Hans: _Text | dict[str, _Text] = Field(alias="zh-Hans")

    def by_language(self) -> dict[str, str | dict[str, str]]:
        """``{"fr": ..., "zh-Hans": ...}``."""
        return {"fr": self.fr, "zh-Hans": self.zh_Hans}


# <English text: {language: text}>; filled once at start by the rule files' loaders.
_RULE_TEXTS: dict[str, dict[str, str]] = {}


def _words(text: str) -> str:
    return " ".join(text.split())


def remember_rule_text(english: str, translated: dict[str, str]) -> None:
    """Record a rule file's translations of ``english`` (whitespace is normalised on both sides)."""
    _RULE_TEXTS.setdefault(_words(english), {}).update(
        {language: _words(text) for language, text in translated.items()})


def rule_text(english: str, language: str) -> str:
    """``english`` (a rule file's text) in ``language``; itself when no rule file translates it."""
    if language == "en" or not english:
        return english
    return _RULE_TEXTS.get(_words(english), {}).get(language, english)


@dataclass(frozen=True, slots=True)
class Translator:
    """One reader's language, formats and time zone.

    Args:
        locale: BCP 47 tag (checked by :func:`check_locale`); ``fr-CA`` reads the French
            catalogue with Canadian formats.
        timezone: IANA zone for times; an unknown one falls back to UTC.

    Raises:
        LocaleError: see :func:`language_of`.
    """

    locale: str = DEFAULT_LOCALE
    timezone: str = "UTC"
    language: str = field(init=False)
    zone: ZoneInfo = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "language", language_of(self.locale))
        object.__setattr__(self, "zone", _zone(self.timezone))

    def gettext(self, message: str, **params: Any) -> str:
        """``message`` in the reader's language, ``%(name)s`` filled from ``params``."""
        text = translations(self.language).gettext(message)
        return text % params if params else text

    def ngettext(self, singular: str, plural: str, n: int, **params: Any) -> str:
        """The form of ``n`` in the reader's language; ``%(num)s`` is ``n``."""
        text = translations(self.language).ngettext(singular, plural, n)
        return text % {"num": n, **params}

    def rule_text(self, english: str) -> str:
        """A rule file's English text in the reader's language (see :func:`rule_text`)."""
        return rule_text(english, self.language)

    def datetime(self, moment: datetime, form: str = "medium") -> str:
        """An aware instant in the reader's zone and locale (see :func:`format_datetime`)."""
        return format_datetime(moment, self.zone, self.locale, form)

    def money(self, amount_minor: int, currency: str) -> str:
        """Integer minor units as the reader writes money (see :func:`format_money`)."""
        return format_money(amount_minor, currency, self.locale)

    def duration(self, delta: timedelta) -> str:
        """A duration in words (see :func:`format_duration`)."""
        return format_duration(delta, self.locale)
