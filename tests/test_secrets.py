"""Secrets never reach an error, a log or an API answer: the redaction helpers and every path that uses them."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from typer.testing import CliRunner

from monitor.alerts.store import AlertStore
from monitor.alerts.store.db import StoreUnavailable
from monitor.cli import app
from monitor.config import Settings
from monitor.secrets import redact_secret, redact_url, redact_urls, scrub_url, url_host
from monitor.testing.broker import free_port
from tests.postgres import PostgresServer

CARDMON = Path(sys.executable).parent / "cardmon"
runner = CliRunner()
# Passwords as operators type them: unencoded delimiters, percent signs valid and not.
PASSWORDS = ["p%zzS3cretA", "S3cret%2", "S3c%40ret/with#odd?chars", "pa:ss@S3cretB", "100%S3cretC"]

pytestmark = pytest.mark.usefixtures("clean_environment")  # monitor.testing.fixtures


def _forms(password: str) -> list[str]:
    """The pieces of a password that must not appear (long enough to mean something)."""
    return [piece for piece in (password, *password.replace("%", "/").split("/")) if len(piece) >= 6]


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_store_url_shows_no_password_in_any_form(password: str) -> None:
    """redact_url hides the password whole, and redact_secret hides it from a driver's message, as typed or decoded."""
    url = f"postgresql://cardmon:{password}@db.bank.internal:5432/cardmon"
    assert redact_url(url) == "postgresql://cardmon:***@db.bank.internal:5432/cardmon"
    message = f'invalid percent-encoded token: "{password}" (also {quote(password, safe="")})'
    for form in _forms(password):
        assert form not in redact_secret(message, url)


def test_url_host_and_scrub_url_keep_only_the_host() -> None:
    """An error names host and port; the user, password, path and query token are gone, and unknown URLs are hidden whole."""
    url = "https://hook-user:Hunter2Pass@hooks.bank.example:8443/services/T0KEN-PATH?token=QueryT0ken"
    assert url_host(url) == "hooks.bank.example:8443"
    assert url_host("not a url") == "<invalid URL>"
    text = scrub_url(f"POST {url} failed for hook-user (Hunter2Pass, QueryT0ken, T0KEN-PATH), "
                     "see https://other.example/x?key=k3y", url)
    for secret in ("hook-user", "Hunter2Pass", "QueryT0ken", "T0KEN-PATH", "k3y"):
        assert secret not in text, text
    assert redact_urls("GET https://u:p@x.example/a?b=c done") == "GET https://<redacted> done"


@pytest.mark.parametrize("password", PASSWORDS)
def test_settings_errors_never_quote_a_store_url(password: str) -> None:
    """A store URL the settings refuse (not postgresql://) is never quoted back."""
    with pytest.raises(Exception) as caught:
        Settings(alerting={"store_url": f"mysql://cardmon:{password}@db/cardmon"})
    for form in _forms(password):
        assert form not in str(caught.value)


@pytest.mark.parametrize("password", PASSWORDS)
def test_opening_a_store_never_prints_its_password(password: str, caplog: pytest.LogCaptureFixture) -> None:
    """A malformed or unreachable PostgreSQL URL fails with an error whose text, and the log, hold no password."""
    caplog.set_level(logging.DEBUG)
    raw = f"postgresql://cardmon:{password}@127.0.0.1:{free_port()}/cardmon"
    encoded = f"postgresql://cardmon:{quote(password, safe='')}@127.0.0.1:{free_port()}/cardmon"
    errors = []
    for url in (raw, encoded):
        with pytest.raises(Exception) as caught:
            AlertStore(url)
        errors.append(caught.value)
    assert isinstance(errors[1], StoreUnavailable)  # well-formed, nobody listening: transient
    for error in errors:
        text = f"{error} {error!r} {error.__cause__} {error.__context__ if not error.__suppress_context__ else ''}"
        for form in _forms(password):
            assert form not in text and form not in caplog.text, text


@pytest.mark.parametrize("password", PASSWORDS[:3])
def test_cli_store_commands_never_print_the_password(password: str) -> None:
    """`cardmon alerts list --store URL` with a password that is malformed or refused exits 1 without any form of it."""
    for url in (f"postgresql://cardmon:{password}@127.0.0.1:{free_port()}/cardmon",
                f"postgresql://cardmon:{quote(password, safe='')}@127.0.0.1:{free_port()}/cardmon"):
        result = runner.invoke(app, ["alerts", "list", "--store", url])
        assert result.exit_code == 1, result.output
        for form in _forms(password):
            assert form not in result.output, result.output


@pytest.mark.parametrize("password", PASSWORDS[:3])
def test_cardmon_run_never_prints_the_store_password(password: str, tmp_path: Path) -> None:
    """`cardmon run` whose store URL is malformed or unreachable stops in one line that holds no form of the password."""
    if not CARDMON.is_file():
        pytest.skip(f"cardmon console script not installed at {CARDMON}")
    for n, url in enumerate((f"postgresql://cardmon:{password}@127.0.0.1:{free_port()}/cardmon",
                             f"postgresql://cardmon:{quote(password, safe='')}@127.0.0.1:{free_port()}/c")):
        config = tmp_path / f"cardmon-{n}.yaml"
        config.write_text(yaml.safe_dump({
            "alerting": {"store_url": url, "postgres": {"connect_timeout_seconds": 2}},
            "registry": {"customers_path": str(tmp_path / "c.csv"), "managers_path": str(tmp_path / "m.csv")},
            "metrics": {"port": free_port()}, "api": {"enabled": False}}), encoding="utf-8")
        (tmp_path / "c.csv").write_text("customer_id,name,tier,manager_id,card_refs\n", encoding="utf-8")
        (tmp_path / "m.csv").write_text("manager_id,name,email,timezone\n", encoding="utf-8")
        result = subprocess.run([str(CARDMON), "run", "--config", str(config)], capture_output=True,
                                text=True, timeout=60, cwd=tmp_path, check=False)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert "alert store" in output
        for form in _forms(password):
            assert form not in output, output


def test_a_role_with_special_characters_in_its_password_connects_and_never_shows_it(
        postgres: PostgresServer) -> None:
    """A real login whose password holds % / @ # ? : works when percent-encoded, and the store's location hides it."""
    password = "S3c%40r/e:t#?@%zz"
    with postgres.connect() as admin:
        admin.execute("DROP ROLE IF EXISTS odd_pw")
        admin.execute(f"CREATE ROLE odd_pw LOGIN SUPERUSER PASSWORD '{password}'")
    base = postgres.new_store_url()
    url = base.replace(f"cardmon:{postgres.password}@", f"odd_pw:{quote(password, safe='')}@")
    with AlertStore(url) as store:
        assert store.location.startswith("postgresql://odd_pw:***@127.0.0.1:")
        assert "S3c" not in repr(store) and "S3c" not in store.location


@pytest.mark.parametrize("token", ["", "short", "fifteen-chars-x"])
def test_an_api_token_shorter_than_16_characters_is_refused_without_quoting_it(token: str) -> None:
    """api.token needs 16+ characters; the error says so and how to make one, and never quotes the token."""
    with pytest.raises(Exception) as caught:
        Settings(api={"token": token})
    message = str(caught.value)
    assert "api.token" in message and "at least 16 characters" in message
    assert "openssl rand -hex 32" in message
    assert not token or token not in message
    assert Settings(api={"token": "x" * 16}).api.token is not None


def test_cardmon_run_with_a_short_api_token_exits_2_in_one_line(tmp_path: Path) -> None:
    """`cardmon run` refuses a short API token before starting anything, in one line that does not quote it."""
    config = tmp_path / "cardmon.yaml"
    config.write_text(yaml.safe_dump({"api": {"token": "changeme"}}), encoding="utf-8")
    result = runner.invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 2
    assert "api.token: Value error, must be at least 16 characters" in result.output
    assert "changeme" not in result.output
