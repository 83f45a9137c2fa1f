"""A real, throwaway PostgreSQL server for the tests (Debian package ``postgresql``).

:class:`PostgresServer` runs ``initdb`` in a temporary directory and ``postgres`` on
127.0.0.1 and a free port, with password (SCRAM) logins, until :meth:`stop`. For
fault tests, :meth:`halt` and :meth:`resume` stop and restart it on the same port
with its data, and :meth:`backend_pids` finds the processes serving cardmon's sessions.
``initdb`` refuses to run as root: as root, the server runs as the ``postgres``
system user (created by the Debian package), else ``nobody``. The database's
default collation is ICU ``en-US``, not ``C``, so the store's ``COLLATE "C"``
columns are what makes text order bytewise in the tests, as in production.

Each test gets its own schema (:meth:`PostgresServer.new_store_url`) in one
database, so tests never see each other's rows and no database is created per test.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Self

import psycopg
import pytest

__all__ = ["PostgresServer", "PostgresUnavailable", "find_bindir", "running_postgres"]

_SUPERUSER: Final = "cardmon"
_DATABASE: Final = "cardmon_test"
# Durability off: the tests never crash the server, and fsync would dominate their time.
_SERVER_SETTINGS: Final = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "deadlock_timeout": "200ms",
}


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server binaries are not installed here."""


def find_bindir() -> Path:
    """The directory of ``initdb`` on PATH, else the newest ``/usr/lib/postgresql/<version>/bin``.

    Raises:
        PostgresUnavailable: none is installed (``apt-get install postgresql``).
    """
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                        key=lambda path: int(re.sub(r"\D", "", path.parts[-3]) or 0))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path))
    for initdb in reversed(candidates):
        if (initdb.parent / "postgres").is_file():
            return initdb.parent
    raise PostgresUnavailable("PostgreSQL server binaries not found (Debian package 'postgresql')")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """A PostgreSQL server in a temporary directory; a context manager.

    Attributes:
        port: its TCP port on 127.0.0.1.
        password: the superuser's password (``cardmon``).
        startup_seconds: how long ``initdb`` plus the server start took.
    """

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.port = _free_port()
        self.password = secrets.token_urlsafe(16)
        self.startup_seconds = 0.0
        self._root = Path(tempfile.mkdtemp(prefix="cardmon-pg-"))  # data/, server.log, pwfile
        self._process: subprocess.Popen[bytes] | None = None
        self._user: pwd.struct_passwd | None = None  # who runs the server when we are root
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    self._user = pwd.getpwnam(name)
                    break
                except KeyError:
                    continue
            else:
                raise PostgresUnavailable("running as root and no 'postgres' or 'nobody' user")

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self._root / "server.log"

    def url(self, database: str = _DATABASE, *, schema: str | None = None) -> str:
        """A ``postgresql://`` URL (with the password) to a database, optionally one schema."""
        query = f"?options=-csearch_path%3D{schema}" if schema else ""
        return (f"postgresql://{_SUPERUSER}:{self.password}@127.0.0.1:{self.port}/"
                f"{database}{query}")

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit superuser connection to the test database."""
        return psycopg.connect(self.url(), autocommit=True)

    def new_store_url(self) -> str:
        """A URL whose ``search_path`` is a new, empty schema: one alert store per test."""
        schema = "t_" + uuid.uuid4().hex[:12]
        with self.connect() as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return self.url(schema=schema)

    def _run_as(self) -> dict[str, object]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def start(self) -> Self:
        """Run ``initdb`` and start the server; return when it accepts logins.

        Raises:
            RuntimeError: ``initdb`` failed or the server did not come up within 60 s
                (the message carries the end of its log).
        """
        began = time.monotonic()
        data = self._root / "data"
        pwfile = self._root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._user is not None:
            for path in (self._root, pwfile):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        initdb = subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(data), "-U", _SUPERUSER, "--pwfile", str(pwfile),
             "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--locale-provider=icu",
             "--icu-locale=en-US", "--no-sync", "--no-instructions"],
            capture_output=True, text=True, cwd=self._root, check=False, **self._run_as(),  # type: ignore[call-overload]
        )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed ({initdb.returncode}): {initdb.stderr[-2000:]}")
        self._launch()
        self.startup_seconds = time.monotonic() - began
        return self

    def _launch(self, *, create_database: bool = True) -> None:
        """Start ``postgres`` on the data directory; return when it accepts logins."""
        options = [item for key, value in _SERVER_SETTINGS.items() for item in ("-c", f"{key}={value}")]
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self._root / "data"), "-p", str(self.port),
             *options],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self._root,
            **self._run_as(),  # type: ignore[call-overload]
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=2) as conn:
                    if create_database:
                        conn.execute(f"CREATE DATABASE {_DATABASE}")
                return
            except psycopg.OperationalError as error:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"PostgreSQL did not start: {error}\n{self._log_tail()}") from None
                time.sleep(0.05)

    def halt(self) -> None:
        """Stop the server as an outage would (fast shutdown: sessions end), keeping its data."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            self._process.wait(timeout=30)
        self._process = None

    def resume(self) -> None:
        """Start the halted server again on the same port; return when it accepts logins."""
        if self._process is None:
            self._launch(create_database=False)

    @property
    def running(self) -> bool:
        """Whether the server process is up."""
        return self._process is not None and self._process.poll() is None

    def backend_pids(self, application_name: str = "cardmon") -> list[int]:
        """PIDs of the server processes serving the sessions of ``application_name``."""
        with self.connect() as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                                "AND pid <> pg_backend_pid() ORDER BY pid",
                                (application_name,)).fetchall()
        return [int(row[0]) for row in rows]

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def data_files(self) -> list[Path]:
        """Every file of the server's data directory (tables, WAL), for raw-byte checks."""
        return [path for path in (self._root / "data").rglob("*") if path.is_file()]

    def data_bytes(self) -> bytes:
        """The bytes of every file of the data directory (tables, indexes, WAL), concatenated.

        The server is running: a file it removes between the listing and the read (the
        relation cache's ``pg_internal.init``, which any DDL invalidates, or a temporary
        file) is skipped; it holds no table data.
        """
        chunks = []
        for path in self.data_files():
            try:
                chunks.append(path.read_bytes())
            except FileNotFoundError:
                continue
        return b"".join(chunks)

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the server we started), then delete the directory."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def running_postgres() -> Iterator[PostgresServer]:
    """A started server for a fixture to yield from; skip where PostgreSQL is absent, fail in CI.

    ``CARDMON_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) turns the skip into a failure.
    """
    try:
        bindir = find_bindir()
    except PostgresUnavailable as error:
        if os.environ.get("CARDMON_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{error} and CARDMON_REQUIRE_POSTGRES=1")
        pytest.skip(f"{error}: apt-get install postgresql")
    with PostgresServer(bindir) as server:
        yield server
