"""The store's database adapter: one SQL for SQLite and PostgreSQL, rows by name, secrets hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.alerts.store.connection import connect
from monitor.alerts.store.db import StoreUnavailable, is_transient, is_url
from monitor.alerts.store.postgres import PostgresDatabase, _pg_sql
from monitor.secrets import redact_secret, redact_url
from tests.postgres import PostgresServer


def test_placeholders_become_psycopg_ones_outside_string_literals() -> None:
    """``?`` becomes ``%s`` and ``%`` is escaped, except that a ``?`` inside quotes stays."""
    assert _pg_sql("SELECT a FROM t WHERE b = ? AND c LIKE 'x?%' LIMIT ?") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE 'x?%%' LIMIT %s")


@pytest.mark.parametrize("sql", ["INSERT OR IGNORE INTO t VALUES (?)", "PRAGMA user_version",
                                 "insert or replace into t values (1)"])
def test_sqlite_only_sql_is_refused_for_postgresql_with_the_portable_form(sql: str) -> None:
    """SQLite-only statements fail loudly for PostgreSQL, naming ON CONFLICT DO NOTHING."""
    with pytest.raises(ValueError, match="ON CONFLICT DO NOTHING"):
        _pg_sql(sql)


def test_urls_are_told_from_paths_and_their_passwords_are_redacted() -> None:
    """A postgresql:// URL is a URL, a path is not; the password never survives redaction."""
    url = "postgresql://cardmon:p%40ss-w0rd@db.bank.internal:5432/cardmon?sslmode=require"
    assert is_url(url) and is_url("postgres://db/x") and not is_url(Path("postgresql:/x"))
    assert not is_url("var/alerts.db")
    assert redact_url(url) == "postgresql://cardmon:***@db.bank.internal:5432/cardmon?sslmode=require"
    assert redact_url("postgresql://db/cardmon?user=u&password=pw") == (
        "postgresql://db/cardmon?user=u&password=***")
    assert redact_url("postgresql://cardmon@db/cardmon") == "postgresql://cardmon@db/cardmon"
    assert redact_secret("auth failed for p%40ss-w0rd and p@ss-w0rd", url) == (
        "auth failed for *** and ***")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A connection to a fresh SQLite file or PostgreSQL schema."""
    if request.param == "sqlite":
        db = connect(tmp_path / "t.db")
    else:
        db = connect(request.getfixturevalue("postgres").new_store_url())
    yield db
    db.close()


def test_one_sql_runs_on_both_with_rows_by_name_and_index(database) -> None:  # type: ignore[no-untyped-def]
    """The same statements create, upsert and read on both; rows answer by column name and position."""
    database.execute('CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL, note TEXT)')
    with database.transaction() as conn:
        first = conn.execute("INSERT INTO t (k, n, note) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                             ("a", 1, "50% off?"))
        again = conn.execute("INSERT INTO t (k, n, note) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                             ("a", 2, None))
        conn.executemany("INSERT INTO t (k, n) VALUES (?, ?)", [("b", 2), ("c", 3)])
    assert (first.rowcount, again.rowcount) == (1, 0)
    row = database.execute("SELECT k, n, note FROM t WHERE k = ?", ("a",)).fetchone()
    assert (row["k"], row["n"], row["note"], row[0], row[1]) == ("a", 1, "50% off?", "a", 1)
    assert [r["k"] for r in database.execute("SELECT k FROM t ORDER BY k").fetchall()] == ["a", "b", "c"]
    returned = database.execute("INSERT INTO t (k, n) VALUES (?, ?) RETURNING n", ("d", 4)).fetchone()
    assert returned[0] == 4


def test_a_failing_transaction_leaves_nothing(database) -> None:  # type: ignore[no-untyped-def]
    """An exception inside ``transaction()`` rolls back every statement of it."""
    database.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    with pytest.raises(RuntimeError), database.transaction() as conn:
        conn.execute("INSERT INTO t (k) VALUES (?)", ("a",))
        raise RuntimeError("boom")
    assert database.execute("SELECT count(*) FROM t").fetchone()[0] == 0


def test_a_postgresql_connection_killed_by_the_server_is_opened_again(postgres: PostgresServer) -> None:
    """After the server ends the session (a restart, a failover), the next call reconnects by itself."""
    db = PostgresDatabase(postgres.new_store_url())
    try:
        pid = db.execute("SELECT pg_backend_pid()").fetchone()[0]
        with postgres.connect() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreUnavailable, match="administrator command") as caught:
            db.execute("SELECT 1")
        assert is_transient(caught.value)
        assert db.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
    finally:
        db.close()
    assert "password" not in repr(db) and postgres.password not in repr(db)


@pytest.mark.parametrize("url, shown", [
    ("postgresql://cardmon:S3cret/LeakMe@127.0.0.1:59999/cardmon", "postgresql://cardmon:***@127.0.0.1:59999/cardmon"),
    ("postgresql://cardmon:S3cret@LeakMe@127.0.0.1/c", "postgresql://cardmon:***@127.0.0.1/c"),
    ("postgresql://cardmon:a#b?c@db/c", "postgresql://cardmon:***@db/c"),
    ("postgresql+psycopg://cardmon:S3cretStore@db:5432/cardmon", "postgresql+psycopg://cardmon:***@db:5432/cardmon"),
])
def test_passwords_with_unencoded_delimiters_are_hidden_whole(url: str, shown: str) -> None:
    """A password as people type it (an unencoded /, @, ? or #) is redacted whole, also in driver messages."""
    assert is_url(url)
    assert redact_url(url) == shown
    password = url.partition("://")[2].rpartition("@")[0].partition(":")[2]
    message = f"failed to resolve host '{password.split('@')[-1]}@127.0.0.1' for {password}"
    assert "S3cret" not in redact_secret(message, url) and "LeakMe" not in redact_secret(message, url)


def test_an_unsupported_url_scheme_is_refused_not_taken_for_a_file(tmp_path: Path) -> None:
    """postgresql+psycopg:// is a URL cardmon does not speak: refused by name, no file created, no password shown."""
    import psycopg

    with pytest.raises(psycopg.InterfaceError, match="unsupported alert store URL scheme 'postgresql\\+psycopg'") as caught:
        connect("postgresql+psycopg://cardmon:S3cretStore@db/cardmon")
    assert "S3cretStore" not in str(caught.value)
