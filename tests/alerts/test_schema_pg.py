"""The PostgreSQL schema: the same tables as SQLite, bytewise text order, versions kept in step."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from monitor.alerts.store import AlertStore, schema_pg
from monitor.alerts.store.schema import _MIGRATIONS as SQLITE_MIGRATIONS
from monitor.alerts.store.schema import SCHEMA_VERSION
from monitor.domain import VipFailure
from tests.postgres import PostgresServer


def test_every_sqlite_version_above_the_base_has_postgresql_statements() -> None:
    """A schema version added for SQLite must come with its PostgreSQL statements (else PostgreSQL stores break)."""
    assert schema_pg.PG_BASE_VERSION <= SCHEMA_VERSION
    above = {v for v in SQLITE_MIGRATIONS if v > schema_pg.PG_BASE_VERSION}
    assert above == set(schema_pg._MIGRATIONS), (
        "add the PostgreSQL statements of each new version to monitor/alerts/store/schema_pg.py")


def test_postgresql_has_the_same_tables_and_columns_as_sqlite(postgres: PostgresServer, tmp_path: Path) -> None:
    """A new PostgreSQL store and a new SQLite store have the same tables with the same columns."""
    AlertStore(tmp_path / "alerts.db").close()
    with sqlite3.connect(tmp_path / "alerts.db") as lite:
        tables = [name for (name,) in lite.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        sqlite_columns = {t: {row[1] for row in lite.execute(f"PRAGMA table_info({t})")} for t in tables}
    url = postgres.new_store_url()
    AlertStore(url).close()
    with psycopg.connect(url) as pg:
        rows = pg.execute("""SELECT table_name, column_name FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name != 'cardmon_schema'""").fetchall()
    pg_columns: dict[str, set[str]] = {}
    for table, column in rows:
        pg_columns.setdefault(table, set()).add(column)
    assert pg_columns == sqlite_columns


def test_text_sorts_bytewise_although_the_database_locale_does_not(postgres: PostgresServer) -> None:
    """Every text column is COLLATE "C": stored timestamps and IDs order bytewise whatever the database's collation."""
    url = postgres.new_store_url()
    AlertStore(url).close()
    with psycopg.connect(url) as pg:
        assert pg.execute("SELECT 'a' < 'B'").fetchone() == (True,)  # ICU en-US: not bytewise
        collations = set(pg.execute("""SELECT collation_name FROM information_schema.columns
            WHERE table_schema = current_schema() AND data_type = 'text'""").fetchall())
        assert collations == {("C",)}
        pg.execute("INSERT INTO digests VALUES ('dg-a', 'a', 'x', 'UTC', 'x', 'x', 0, 'x'), "
                   "('dg-B', 'B', 'x', 'UTC', 'x', 'x', 0, 'x')")
        assert pg.execute("SELECT manager_id FROM digests ORDER BY manager_id").fetchall() == [("B",), ("a",)]
        pg.rollback()


def test_a_postgresql_store_from_a_newer_cardmon_is_refused(postgres: PostgresServer) -> None:
    """Opening a PostgreSQL store whose schema version is above this cardmon's fails and changes nothing."""
    url = postgres.new_store_url()
    AlertStore(url).close()
    with psycopg.connect(url) as pg:
        pg.execute("UPDATE cardmon_schema SET version = 99")
    with pytest.raises(psycopg.DatabaseError, match="schema version 99"):
        AlertStore(url)
    with psycopg.connect(url) as pg:
        assert pg.execute("SELECT version FROM cardmon_schema").fetchall() == [(99,)]


def test_an_existing_store_runs_with_a_role_that_may_only_read_insert_and_update(
    postgres: PostgresServer, make_failure: Callable[..., VipFailure]
) -> None:
    """Once the schema exists, an instance whose role has SELECT, INSERT and UPDATE only records, sends and acknowledges."""
    url = postgres.new_store_url()
    AlertStore(url).close()
    schema = url.rsplit("%3D", 1)[1]
    role = f"app_{schema}"
    with postgres.connect() as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'app-pw'")
        admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        admin.execute(f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {schema} TO {role}")
        admin.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}")
    app_url = url.replace(f"cardmon:{postgres.password}@", f"{role}:app-pw@")
    now = datetime.now(UTC)
    with AlertStore(app_url) as store:
        (alert_id,) = store.record([make_failure("ev-1", now)], now=now).new_alert_ids
        (delivery,) = store.claim_due(now)
        assert store.mark_sent(delivery.delivery_id, now)
        assert store.acknowledge(alert_id, by="RM-017", via="api").changed
        assert store.state_of(alert_id) == "acknowledged"
