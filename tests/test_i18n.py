"""The manager's language: formats through Babel, locales, catalogues and the rule files' translations."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from monitor.i18n import (
    CATALOGUE_DIR,
    LANGUAGES,
    LocaleError,
    RuleTexts,
    Translator,
    check_locale,
    format_datetime,
    format_money,
    language_of,
    negotiate,
    rule_text,
)
from monitor.paths import rules_path
from monitor.pipeline.classify import ResponseCodeError, ResponseCodeTable, default_table
from monitor.pipeline.selection import AlertPolicy, PolicyError
from monitor.rulebook import RuleFile

ROOT = Path(__file__).resolve().parents[1]
NBSP = "\u00a0"
NNBSP = "\u202f"
_PLACEHOLDER = re.compile(r"%\((\w+)\)[0-9]*[sd]")


def test_money_is_written_the_way_each_locale_writes_it() -> None:
    """Integer minor units become the locale's money: EUR 134.09 in French is "134,09 €" with Babel's no-break space."""
    assert format_money(13409, "EUR", "fr") == f"134,09{NBSP}€"
    assert format_money(13409, "EUR", "en") == "€134.09"
    assert format_money(13409, "EUR", "zh-Hans") == "€134.09"
    assert format_money(123456789, "EUR", "fr").replace(NNBSP, " ") == f"1 234 567,89{NBSP}€"


def test_the_currency_exponent_comes_from_iso_4217() -> None:
    """JPY has no minor unit and KWD three: 1234 minor units are ¥1,234 and KWD 1.234."""
    assert format_money(1234, "JPY", "en") == "¥1,234"
    assert format_money(1234, "JPY", "zh-Hans") == "JP¥1,234"
    assert format_money(1234, "KWD", "en") == "KWD1.234"
    assert format_money(1234, "KWD", "fr") == f"1,234{NBSP}KWD"


def test_dates_and_times_are_in_the_readers_zone_and_locale() -> None:
    """One instant reads as Chinese in Shanghai, French in Paris, and moves with the zone."""
    moment = datetime(2026, 3, 5, 14, 7, tzinfo=UTC)
    assert format_datetime(moment, "Asia/Shanghai", "zh-Hans") == "2026年3月5日 22:07:00"
    assert format_datetime(moment, "Europe/Paris", "fr") == "5 mars 2026, 15:07:00"
    assert Translator("zh-Hans", "Asia/Shanghai").datetime(moment, "full").startswith("2026年3月5日星期四")
    assert Translator("fr", "Mars/Olympus").datetime(moment) == "5 mars 2026, 14:07:00"  # unknown zone: UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        format_datetime(datetime(2026, 3, 5), "UTC", "fr")


def test_durations_are_in_words_of_the_readers_language() -> None:
    """Three minutes read as "3 minutes", "3 minutes" and "3分钟"."""
    assert Translator("en").duration(timedelta(minutes=3)) == "3 minutes"
    assert Translator("fr").duration(timedelta(minutes=3)) == "3 minutes"
    assert Translator("zh-Hans").duration(timedelta(minutes=3)) == "3分钟"


@pytest.mark.parametrize(("tag", "language"), [
    ("en", "en"), ("en-GB", "en"), ("fr", "fr"), ("fr-CA", "fr"), ("fr_FR", "fr"),
    ("zh-Hans", "zh-Hans"), ("zh-CN", "zh-Hans"), ("zh", "zh-Hans"),
])
def test_a_locale_reads_the_catalogue_of_its_language(tag: str, language: str) -> None:
    """A BCP 47 tag picks the catalogue of its language; its region only changes the formats."""
    assert language_of(tag) == language
    assert check_locale(tag) == tag.replace("_", "-")


@pytest.mark.parametrize("tag", ["de", "zh-Hant", "zh-TW", "klingon", "xx"])
def test_a_locale_cardmon_cannot_read_is_refused(tag: str) -> None:
    """A language without a catalogue, or a tag CLDR does not know, is an error naming the tag."""
    with pytest.raises(LocaleError, match=re.escape(repr(tag))):
        check_locale(tag)


def test_no_locale_means_english() -> None:
    """An empty registry cell reads English."""
    assert check_locale(None) == check_locale("  ") == "en"


@pytest.mark.parametrize(("header", "language"), [
    ("fr-FR,fr;q=0.9,en;q=0.8", "fr"), ("zh-CN,zh;q=0.9", "zh-Hans"), ("de-DE,de;q=0.9", "en"),
    ("de, fr;q=0.5", "fr"), ("en;q=0.2, fr;q=0.9", "fr"), (None, "en"), ("", "en"), ("*", "en"),
    ("fr;q=0", "en"), ("fr;q=nonsense", "en"),
    # Tags are case-insensitive (RFC 5646): any spelling picks the same language.
    ("FR", "fr"), ("Fr-CA", "fr"), ("ZH-TW", "zh-Hans"), ("zh-hans", "zh-Hans"), ("de,FR;q=0.5", "fr"),
])
def test_a_browsers_accept_language_is_negotiated(header: str | None, language: str) -> None:
    """Before sign-in the page speaks the browser's best language cardmon knows, English otherwise."""
    assert negotiate(header) == language


def test_translations_fill_their_parameters() -> None:
    """gettext and ngettext translate, then fill ``%(name)s`` parameters (plural by the number)."""
    assert Translator("fr").gettext("Sign in as %(name)s", name="Claire") == "Se connecter en tant que Claire"
    assert Translator("zh-Hans").gettext("Sign in") == "登录"
    assert Translator("en").gettext("Sign in") == "Sign in"
    only = ("Only the most recent alert is shown.", "Only the %(num)s most recent alerts are shown.")
    assert Translator("fr").ngettext(*only, 200) == "Seules les 200 alertes les plus récentes sont affichées."
    assert Translator("fr").ngettext(*only, 1) == "Seule l’alerte la plus récente est affichée."


# --- catalogues ---------------------------------------------------------------------


def _source_messages() -> set[str | tuple[str, str]]:
    """Every msgid marked in the source, extracted as ``pybabel extract -F babel.cfg`` does."""
    method_map = [("monitor/**.py", "python"), ("monitor/workspace/templates/**.html", "jinja2")]
    found: set[str | tuple[str, str]] = set()
    for _, _, message, _, _ in extract_from_dir(str(ROOT), method_map,
                                                keywords={"gettext": None, "ngettext": (1, 2),
                                                          "_": None, "N_": None}):
        found.add(message if isinstance(message, str) else (message[0], message[1]))
    return found


@pytest.mark.parametrize("folder", ["fr", "zh_Hans"])
def test_every_marked_text_is_translated(folder: str) -> None:
    """Every text marked for translation in code or templates has a non-empty, non-fuzzy translation (fails on a new string until its catalogue has it)."""
    with (CATALOGUE_DIR / folder / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po)
    translated = {message.id if isinstance(message.id, str) else tuple(message.id[:2])
                  for message in catalog
                  if message.id and not message.fuzzy
                  and all(message.string if isinstance(message.string, tuple) else [message.string])}
    missing = sorted(map(str, _source_messages() - translated))
    assert missing == [], f"untranslated in {folder}: run pybabel extract/update (monitor/i18n.py)"


@pytest.mark.parametrize("folder", ["fr", "zh_Hans"])
def test_translations_keep_every_placeholder(folder: str) -> None:
    """A translation uses exactly the ``%(name)s`` parameters of its English text (``num`` aside in a plural)."""
    with (CATALOGUE_DIR / folder / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po)
    for message in catalog:
        if not message.id:
            continue
        english = message.id if isinstance(message.id, str) else message.id[1]
        for text in (message.string if isinstance(message.string, tuple) else (message.string,)):
            wanted = set(_PLACEHOLDER.findall(english)) - ({"num"} if message.pluralizable else set())
            assert wanted <= set(_PLACEHOLDER.findall(text)), (message.id, text)
            assert set(_PLACEHOLDER.findall(text)) <= set(_PLACEHOLDER.findall(english)), (message.id, text)


# --- the rule files' translations ----------------------------------------------------


def test_every_response_code_has_its_meaning_and_action_in_every_language() -> None:
    """Each code of the shipped table, and its timeout and unknown entries, give meaning and action in fr and zh-Hans."""
    table = default_table()
    rows = [*table.codes.values(), table._timeout, table._unknown]
    for row in rows:
        assert set(row.translations) == set(LANGUAGES) - {"en"}, row.code
        for language, texts in row.translations.items():
            assert texts["meaning"] and texts["action"], (row.code, language)
            assert rule_text(row.meaning, language) == texts["meaning"]
            assert rule_text(row.action, language) == texts["action"]


def test_reserved_ranges_have_their_meaning_in_every_language() -> None:
    """A reserved code's meaning ("Reserved for ISO use") reads in French and Chinese."""
    table = default_table()
    assert rule_text(table.meaning("47"), "fr") == "Réservé à l’usage de l’ISO"
    assert rule_text(table.meaning("98"), "zh-Hans") == "保留供国家使用"


def test_every_suggested_action_of_the_policy_is_translated() -> None:
    """Each outcome's suggested action in rules/alerting.yaml reads in French and Chinese."""
    policy = AlertPolicy.load(rules_path("alerting.yaml"))
    document = RuleFile.read(rules_path("alerting.yaml")).document
    assert set(document["action_translations"]) == set(policy.actions)
    for outcome, english in policy.actions.items():
        for language in ("fr", "zh-Hans"):
            assert rule_text(english, language) != english, (outcome, language)


def test_the_reader_gets_a_rule_text_in_their_language_and_english_otherwise() -> None:
    """A known rule text is translated for its reader; a text no rule file translates stays English."""
    default_table()
    assert Translator("fr").rule_text("Issuer or switch is inoperative") == "Émetteur ou commutateur hors service"
    assert Translator("zh-Hans").rule_text("Issuer or switch is inoperative") == "发卡行或交换网络无法工作"
    assert Translator("en").rule_text("Issuer or switch is inoperative") == "Issuer or switch is inoperative"
    assert Translator("fr").rule_text("Call the client to apologise.") == "Call the client to apologise."


def test_a_translation_missing_a_language_is_refused(tmp_path: Path) -> None:
    """A response-code entry whose translations lack zh-Hans, or a field, fails to load, naming the entry."""
    base = """
timeout: {class: technical, meaning: T, action: A}
unknown: {class: unknown, meaning: U, action: B}
codes:
  - code: "05"
    class: customer
    meaning: Do not honour
    action: Call.
"""
    path = tmp_path / "codes.yaml"
    path.write_text(base + '    translations: {fr: {meaning: "Ne pas honorer", action: "Appeler."}}\n')
    with pytest.raises(ResponseCodeError, match=r"codes\[0\].*translations.*zh-Hans"):
        ResponseCodeTable.load(path)
    path.write_text(base + '    translations: {fr: {meaning: "M"}, zh-Hans: {meaning: "M", action: "A"}}\n')
    with pytest.raises(ResponseCodeError, match=r"translations.fr must give exactly meaning, action"):
        ResponseCodeTable.load(path)
    path.write_text(base)
    assert len(ResponseCodeTable.load(path)) == 1  # an operator's table without translations: English


def test_policy_action_translations_are_checked() -> None:
    """An action translation for an outcome without an action, or without every language, is refused."""
    policy = {"tiers": {"private": {"alert_on": ["technical"]}}, "actions": {"technical": "Call."}}
    with pytest.raises(PolicyError, match="action_translations.fraud"):
        AlertPolicy.from_mapping({**policy, "action_translations": {
            "fraud": {"fr": "x", "zh-Hans": "y"}}})
    with pytest.raises(PolicyError, match="action_translations.technical.*zh-Hans"):
        AlertPolicy.from_mapping({**policy, "action_translations": {"technical": {"fr": "Appeler."}}})
    assert RuleTexts.model_validate({"fr": "a", "zh-Hans": "b"}).by_language() == {"fr": "a", "zh-Hans": "b"}
