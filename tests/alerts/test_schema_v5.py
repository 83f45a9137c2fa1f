"""Schema 5: a store written by the schema-4 code opens upgraded, with states that mean what they say."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from monitor.alerts.store import AlertStore, schema, schema_pg
from monitor.alerts.store.schema import CORRECTED_NOTE, SCHEMA_VERSION
from monitor.domain import Manager
from tests.postgres import PostgresServer

# Rows the schema-4 code wrote (tests/alerts/data: how they were made is in the file).
V4_ROWS = Path(__file__).parent / "data" / "store_v4_rows.sql"
BACKUP = Manager(manager_id="RM-042", name="Jonas Weber", email="jonas.weber@bank.example")
# Client → (state written by schema 4, state after schema 5), and why.
EXPECTED = {
    "C-1": ("notified", "notified"),  # e-mail and jsonl sent: the manager was told
    "C-2": ("notified", "open"),  # e-mail still retrying, only the jsonl sink had it
    "C-3": ("notified", "failed"),  # webhook failed for good, only the jsonl sink had it
    "C-4": ("notified", "open"),  # no channel reached the manager, only the jsonl sink had it
    "C-5": ("acknowledged", "acknowledged"),  # someone owns it: left alone
    "C-6": ("failed", "failed"),  # every delivery failed
}


def _rows() -> list[str]:
    return [line for line in V4_ROWS.read_text(encoding="utf-8").splitlines()
            if line.startswith("INSERT")]


def _sqlite_v4(path: Path) -> None:
    """A SQLite file with the schema-4 tables (the migrations are append-only) and the rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    for statement in schema._SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    for version in range(2, 5):
        for statement in schema._MIGRATIONS[version]:
            conn.execute(statement)
    for row in _rows():
        conn.execute(row)
    conn.execute("PRAGMA user_version = 4")
    conn.execute("COMMIT")
    conn.close()


def _postgresql_v4(url: str) -> None:
    """A PostgreSQL schema with the schema-4 tables and the rows (identity counters moved past them)."""
    with psycopg.connect(url, autocommit=True) as pg, pg.transaction():
        pg.execute("CREATE TABLE cardmon_schema (version INTEGER NOT NULL)")
        for statement in (*schema_pg._SCHEMA, *schema_pg._MIGRATIONS[4]):
            pg.execute(statement)
        for row in _rows():
            pg.execute(row)
        for table, column in (("deliveries", "delivery_id"), ("alert_history", "history_id")):
            pg.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                       f"(SELECT max({column}) FROM {table}))")
        pg.execute("INSERT INTO cardmon_schema (version) VALUES (4)")


@pytest.fixture(params=["sqlite", "postgresql"])
def v4_store(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a schema-4 store with the rows of store_v4_rows.sql is (SQLite file or PostgreSQL schema)."""
    if request.param == "sqlite":
        path = tmp_path / "v4.db"
        _sqlite_v4(path)
        return path
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.new_store_url()
    _postgresql_v4(url)
    return url


def _by_client(store: AlertStore) -> dict[str, str]:
    return {alert.customer_id: alert.alert_id for alert in store.list_alerts()}


def test_states_a_sink_alone_made_notified_are_corrected_with_a_history_row(v4_store: str | Path) -> None:
    """Opening a schema-4 store: alerts only a sink had accepted are open or failed again, each with a `corrected` history row; the others keep their state and history."""
    with AlertStore(v4_store) as store:
        assert store.schema_version == SCHEMA_VERSION >= 5
        ids = _by_client(store)
        assert {client: store.state_of(alert_id) for client, alert_id in ids.items()} == {
            client: after for client, (_, after) in EXPECTED.items()}
        for client, (before, after) in EXPECTED.items():
            history = store.history(ids[client])
            corrections = [h for h in history if h.action == "corrected"]
            if before == after:
                assert corrections == [], client
                continue
            (entry,) = corrections
            assert (entry.from_state, entry.to_state, entry.actor, entry.via, entry.note) == (
                before, after, "cardmon", "schema", CORRECTED_NOTE)
            assert entry.history_id > max(h.history_id for h in history if h is not entry)
            assert abs(entry.at - datetime.now(UTC)).total_seconds() < 300
        # The derived status counts deliveries to people only.
        statuses = {a.customer_id: a.status for a in store.list_alerts()}
        assert statuses == {"C-1": "notified", "C-2": "pending", "C-3": "failed", "C-4": "unrouted",
                            "C-5": "failed", "C-6": "failed"}
    with AlertStore(v4_store) as reopened:  # opening again changes nothing
        assert sum(h.action == "corrected" for a in reopened.list_alerts()
                   for h in reopened.history(a.alert_id)) == 3


def test_an_upgraded_store_keeps_retrying_and_takes_the_new_columns(v4_store: str | Path) -> None:
    """The retrying e-mail of schema 4 keeps its attempts, gets a retry window from its creation, and the store writes the new flags and history actions."""
    with AlertStore(v4_store) as store:
        ids = _by_client(store)
        (email, jsonl) = store.get_alert(ids["C-2"]).deliveries  # type: ignore[union-attr]
        assert (email.channel, email.status, email.attempts) == ("email", "pending", 1)
        assert email.first_attempt_at == email.created_at and jsonl.first_attempt_at is None
        assert (email.fallback_at, email.resent_by) == (None, None)
        alerts = store.list_alerts()
        assert not any(a.late or a.unroutable for a in alerts)
        assert store.failed_deliveries() == 4
        resent = store.resend(ids["C-3"], by="Ops Desk", via="cli")
        assert (resent.deliveries, resent.alert_ids) == (1, (ids["C-3"],))
        assert store.state_of(ids["C-3"]) == "open"
        last = store.history(ids["C-3"])[-1]
        assert (last.action, last.actor, last.via, last.from_state, last.to_state) == (
            "resent", "Ops Desk", "cli", "failed", "open")
        # New rows keep counting from the old identities.
        assert last.history_id > 14
        assert store.enqueue_for_manager(ids["C-1"], BACKUP) == 1
        newest = store.get_alert(ids["C-1"])
        assert newest is not None and newest.deliveries[-1].delivery_id == 12  # 11 rows before
