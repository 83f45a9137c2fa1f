"""Shared fixtures: the public ones of :mod:`monitor.testing.fixtures`, and this repository's own.

The plugin gives the real Kafka-compatible broker for the whole session
(``kafka_bootstrap``; set ``KAFKA_BOOTSTRAP_SERVERS`` to test against an existing Kafka
instead of the embedded Tansu broker), ``unique_name``, ``smtp_sink`` and
``clean_environment``. Here: a real PostgreSQL for the whole session, the TabFormer
sample, ``promtool``, and where a test's alert store lives.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.postgres import PostgresServer, running_postgres
from tests.receivers import JsonReceiver, serve_json_receiver

pytest_plugins = ["monitor.testing.fixtures"]

REPO_ROOT = Path(__file__).resolve().parents[1]
TABFORMER_CSV = REPO_ROOT.parent / "shared" / "data" / "tabformer" / "User0_credit_card_transactions.csv"


@pytest.fixture
def tabformer_csv() -> Path:
    """Path of the real TabFormer User0 sample; the test is skipped where it is absent."""
    if not TABFORMER_CSV.is_file():
        if os.environ.get("CARDMON_REQUIRE_TABFORMER") == "1":
            pytest.fail(f"TabFormer sample required in CI but missing at {TABFORMER_CSV}")
        pytest.skip(f"TabFormer sample not found at {TABFORMER_CSV} (see ../shared/data/SOURCES.md)")
    return TABFORMER_CSV


@pytest.fixture
def promtool() -> str:
    """Path of ``promtool`` (Debian package ``prometheus``); skipped where absent, required in CI."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CARDMON_REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool not found and CARDMON_REQUIRE_PROMTOOL=1")
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on 127.0.0.1 (Debian package ``postgresql``); skipped where absent, required in CI."""
    yield from running_postgres()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a test's alert store lives: a new SQLite file, or a new schema in the session's PostgreSQL."""
    if request.param == "sqlite":
        return tmp_path / "alerts.db"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_store_url()


@pytest.fixture
async def json_receiver() -> AsyncIterator[JsonReceiver]:
    """A real HTTP receiver on 127.0.0.1 for Apprise's ``json://`` service (tests/receivers.py)."""
    async with serve_json_receiver() as receiver:
        yield receiver
