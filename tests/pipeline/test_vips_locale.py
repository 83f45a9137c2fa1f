"""The registry's ``locale`` column: the language of each manager's pages and messages."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from monitor.pipeline.vips import RegistryError, RegistryLoader, read_registry
from simulators.fleet import build_fleet
from simulators.fleet import write_registry as write_fleet_registry
from tests.helpers import write_registry

CUSTOMERS_CSV = """
customer_id,name,tier,manager_id
C-001,Ada Lovelace,private,M1
C-002,Blaise Pascal,gold,M2
C-003,Carl Gauss,platinum,M3
"""


def _managers(*locales: str) -> str:
    rows = [f"M{n},Manager {n},m{n}@bank.example,Europe/Paris,{locale}"
            for n, locale in enumerate(locales, start=1)]
    return "manager_id,name,email,timezone,locale\n" + "\n".join(rows)


def test_each_manager_reads_their_own_locale(tmp_path: Path) -> None:
    """``fr``, ``zh-Hans`` and an empty cell give French, Simplified Chinese and English managers."""
    registry = read_registry(*write_registry(tmp_path, CUSTOMERS_CSV, _managers("fr", "zh-Hans", "")))
    assert [registry.managers[m].locale for m in ("M1", "M2", "M3")] == ["fr", "zh-Hans", "en"]


def test_a_registry_without_the_column_is_english(tmp_path: Path) -> None:
    """A managers file written before the column existed loads, every manager in English."""
    managers = "manager_id,name,timezone\nM1,A,UTC\nM2,B,UTC\nM3,C,UTC"
    registry = read_registry(*write_registry(tmp_path, CUSTOMERS_CSV, managers))
    assert {m.locale for m in registry.managers.values()} == {"en"}


def test_a_regional_locale_is_kept_as_written(tmp_path: Path) -> None:
    """``fr-CA`` and ``zh_CN`` load (French and Simplified Chinese text, their region's formats)."""
    registry = read_registry(*write_registry(tmp_path, CUSTOMERS_CSV, _managers("fr-CA", "zh_CN", "en-GB")))
    assert [registry.managers[m].locale for m in ("M1", "M2", "M3")] == ["fr-CA", "zh-CN", "en-GB"]


@pytest.mark.parametrize("locale", ["de", "zh-Hant", "frr-XX-nonsense", "english"])
def test_a_locale_cardmon_cannot_read_stops_the_load(tmp_path: Path, locale: str) -> None:
    """A language without a catalogue or a tag that is not BCP 47 is an error naming the manager and the tag, like an unknown time zone."""
    paths = write_registry(tmp_path, CUSTOMERS_CSV, _managers("fr", locale, "en"))
    with pytest.raises(RegistryError, match=rf"manager 'M2'.*{locale!r}"):
        read_registry(*paths)


def test_a_bad_locale_in_a_reload_keeps_the_previous_registry(tmp_path: Path) -> None:
    """A reload that meets a bad locale fails and the loader keeps serving the registry it had."""
    customers, managers = write_registry(tmp_path, CUSTOMERS_CSV, _managers("fr", "zh-Hans", "en"))
    loader = RegistryLoader(customers, managers)
    loader.load()
    managers.write_text(_managers("fr", "de", "en") + "\n# changed\n", encoding="utf-8")
    assert loader.reload_if_changed() is False
    assert loader.current.managers["M2"].locale == "zh-Hans"


def test_the_synthetic_fleet_writes_the_column(tmp_path: Path) -> None:
    """The simulator's registry files carry the locale column, which reads back."""
    fleet = build_fleet(seed=1, terminals=4, customers=20, vips=5, managers=2)
    customers, managers = write_fleet_registry(fleet, tmp_path)
    assert "locale" in pl.read_csv(managers).columns
    assert {m.locale for m in read_registry(customers, managers).managers.values()} == {"en"}
