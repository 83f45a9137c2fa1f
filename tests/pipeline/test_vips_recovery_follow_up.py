"""The registry's ``recovery_follow_up`` column: a manager opts in to the recovery follow-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.pipeline.vips import RegistryError, read_registry
from tests.helpers import write_registry

CUSTOMERS_CSV = """
customer_id,name,tier,manager_id
C-001,Ada Lovelace,private,M1
C-002,Blaise Pascal,gold,M2
C-003,Carl Gauss,platinum,M3
"""


def _managers(*flags: str) -> str:
    rows = [f"M{n},Manager {n},m{n}@bank.example,{flag}" for n, flag in enumerate(flags, start=1)]
    return "manager_id,name,email,recovery_follow_up\n" + "\n".join(rows)


def test_each_manager_reads_their_own_choice(tmp_path: Path) -> None:
    """``true``, ``no`` and an empty cell give an opted-in manager and two who are not."""
    registry = read_registry(*write_registry(tmp_path, CUSTOMERS_CSV, _managers("true", "no", "")))
    assert [registry.managers[m].recovery_follow_up for m in ("M1", "M2", "M3")] == [
        True, False, False]


def test_a_registry_without_the_column_opts_nobody_in(tmp_path: Path) -> None:
    """A managers file written before the column existed loads, nobody opted in."""
    managers = "manager_id,name,timezone\nM1,A,UTC\nM2,B,UTC\nM3,C,UTC"
    registry = read_registry(*write_registry(tmp_path, CUSTOMERS_CSV, managers))
    assert {m.recovery_follow_up for m in registry.managers.values()} == {False}


def test_a_value_that_is_not_yes_or_no_stops_the_load(tmp_path: Path) -> None:
    """``maybe`` is an error naming the manager and the column, like a bad ``notify_resolved``."""
    paths = write_registry(tmp_path, CUSTOMERS_CSV, _managers("yes", "maybe", "no"))
    with pytest.raises(RegistryError, match=r"manager 'M2': recovery_follow_up must be yes or no"):
        read_registry(*paths)
