"""Settings: YAML file, CARDMON_ environment, defaults; frozen, strict, secrets hidden."""

from __future__ import annotations

import os
from pathlib import Path

import pydantic
import pytest

from monitor.config import Settings, load_settings

YAML = """
kafka:
  bootstrap_servers: kafka-1:9092,kafka-2:9092
  group_id: cardmon-yaml
  batch_max_records: 2000
registry:
  customers_path: /data/registry/customers.parquet
  managers_path: /data/registry/managers.csv
alerting:
  smtp: {host: mail.bank.internal, port: 587, starttls: true, username: cardmon, password: yaml-secret}
  sinks: [jsonl]
metrics:
  port: 9500
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CARDMON_ variable from the caller's shell and no ./cardmon.yaml in the working directory."""
    for name in list(os.environ):
        if name.startswith("CARDMON_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A YAML settings file in the README's shape."""
    path = tmp_path / "settings.yaml"
    path.write_text(YAML, encoding="utf-8")
    return path


def test_defaults_without_any_source() -> None:
    """With no file and no environment the documented defaults apply."""
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.kafka.topic == "card.transactions"
    assert settings.kafka.dead_letter_topic == "card.transactions.dlq"
    assert settings.registry.customers_path is None
    assert settings.registry.reload_interval_seconds == 30.0
    assert settings.metrics.port == 9464
    assert settings.alerting.smtp.host is None


def test_yaml_file_values(config_file: Path) -> None:
    """Values from the YAML file fill nested sections and keep defaults for the rest."""
    settings = load_settings(config_file)
    assert settings.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.kafka.group_id == "cardmon-yaml"
    assert settings.kafka.batch_max_records == 2000
    assert settings.kafka.topic == "card.transactions"
    assert settings.registry.customers_path == Path("/data/registry/customers.parquet")
    assert settings.alerting.smtp.starttls is True
    assert settings.alerting.sinks == ("jsonl",)
    assert settings.metrics.port == 9500


def test_environment_beats_yaml(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CARDMON_ variables (nested with __) override the YAML value and keep its siblings."""
    monkeypatch.setenv("CARDMON_KAFKA__GROUP_ID", "cardmon-env")
    monkeypatch.setenv("CARDMON_ALERTING__SMTP__PORT", "2525")
    monkeypatch.setenv("CARDMON_METRICS__HOST", "0.0.0.0")
    settings = load_settings(config_file)
    assert settings.kafka.group_id == "cardmon-env"
    assert settings.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"  # from YAML
    assert settings.alerting.smtp.port == 2525
    assert settings.alerting.smtp.host == "mail.bank.internal"  # from YAML
    assert settings.metrics.host == "0.0.0.0"
    assert settings.metrics.port == 9500  # from YAML


def test_overrides_beat_environment(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keyword overrides win over the environment and the file."""
    monkeypatch.setenv("CARDMON_KAFKA__TOPIC", "env.topic")
    settings = load_settings(config_file, kafka={"topic": "override.topic"})
    assert settings.kafka.topic == "override.topic"
    assert settings.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"


def test_cardmon_config_variable_and_default_file(config_file: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """CARDMON_CONFIG names the file when no path is given; else ./cardmon.yaml is read when present."""
    monkeypatch.setenv("CARDMON_CONFIG", str(config_file))
    assert load_settings().kafka.group_id == "cardmon-yaml"
    monkeypatch.delenv("CARDMON_CONFIG")
    (tmp_path / "cardmon.yaml").write_text("kafka: {group_id: from-cwd}\n", encoding="utf-8")
    assert load_settings().kafka.group_id == "from-cwd"


def test_load_settings_restores_cardmon_config(config_file: Path, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    """load_settings(path) leaves CARDMON_CONFIG as it found it."""
    load_settings(config_file)
    assert "CARDMON_CONFIG" not in os.environ
    other = tmp_path / "other.yaml"
    other.write_text("{}\n", encoding="utf-8")
    monkeypatch.setenv("CARDMON_CONFIG", str(other))
    load_settings(config_file)
    assert os.environ["CARDMON_CONFIG"] == str(other)


def test_settings_are_frozen(config_file: Path) -> None:
    """Assigning to a loaded setting, top-level or nested, raises."""
    settings = load_settings(config_file)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        settings.kafka.topic = "other"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        settings.metrics = settings.metrics  # type: ignore[misc]
    assert settings.kafka.topic == "card.transactions"


@pytest.mark.parametrize(
    ("text", "field"),
    [("kafka: {bootstrap_server: typo:9092}\n", "kafka.bootstrap_server"),
     ("metrix: {port: 1}\n", "metrix"),
     ("alerting: {smtp: {hots: mail}}\n", "alerting.smtp.hots")],
    ids=["nested", "top-level", "deeply-nested"],
)
def test_unknown_keys_are_rejected(tmp_path: Path, text: str, field: str) -> None:
    """A misspelt key in the YAML file is an error naming it, not silently ignored."""
    path = tmp_path / "typo.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted") as caught:
        load_settings(path)
    assert field in str(caught.value)


def test_unknown_environment_key_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt nested CARDMON_ variable is an error naming the field."""
    monkeypatch.setenv("CARDMON_KAFKA__BOOTSTRAP_SERVER", "typo:9092")
    with pytest.raises(pydantic.ValidationError, match="kafka.bootstrap_server"):
        load_settings()


def test_invalid_values_are_rejected(tmp_path: Path) -> None:
    """Values outside their bounds (batch size 0, unknown offset reset) are errors naming the field."""
    path = tmp_path / "bad.yaml"
    path.write_text("kafka: {batch_max_records: 0, auto_offset_reset: newest}\n", encoding="utf-8")
    with pytest.raises(pydantic.ValidationError) as caught:
        load_settings(path)
    assert "kafka.batch_max_records" in str(caught.value)
    assert "kafka.auto_offset_reset" in str(caught.value)


def test_secrets_are_secret_and_not_in_repr(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SMTP and SASL passwords are SecretStr: readable on purpose, absent from repr and str."""
    monkeypatch.setenv("CARDMON_KAFKA__SASL_PASSWORD", "env-sasl-secret")
    settings = load_settings(config_file)
    assert isinstance(settings.alerting.smtp.password, pydantic.SecretStr)
    assert settings.alerting.smtp.password.get_secret_value() == "yaml-secret"
    assert isinstance(settings.kafka.sasl_password, pydantic.SecretStr)
    assert settings.kafka.sasl_password.get_secret_value() == "env-sasl-secret"
    for text in (repr(settings), str(settings), repr(settings.alerting.smtp)):
        assert "yaml-secret" not in text
        assert "env-sasl-secret" not in text
    assert "**********" in repr(settings.alerting.smtp)


def test_missing_config_path_raises(tmp_path: Path) -> None:
    """load_settings with a path that does not exist raises FileNotFoundError naming it."""
    with pytest.raises(FileNotFoundError, match="absent.yaml"):
        load_settings(tmp_path / "absent.yaml")


def test_missing_cardmon_config_file_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CARDMON_CONFIG naming a file that does not exist raises instead of running on defaults."""
    monkeypatch.setenv("CARDMON_CONFIG", str(tmp_path / "typo.yaml"))
    with pytest.raises(FileNotFoundError, match="typo.yaml"):
        load_settings()


def test_settings_constructor_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings() itself reads CARDMON_ variables, so code that builds it directly sees them too."""
    monkeypatch.setenv("CARDMON_REGISTRY__RELOAD_INTERVAL_SECONDS", "5")
    assert Settings().registry.reload_interval_seconds == 5.0


def test_isolated_settings_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Self-contained runs (the demo) never pick up the operator's CARDMON_* mail relay."""
    from monitor.config import isolated_settings

    monkeypatch.setenv("CARDMON_ALERTING__SMTP__HOST", "relay.bank.example")
    monkeypatch.setenv("CARDMON_KAFKA__TOPIC", "prod.topic")
    settings = isolated_settings(kafka={"bootstrap_servers": "127.0.0.1:1"})
    assert settings.alerting.smtp.host is None
    assert settings.kafka.topic == "card.transactions"
    assert settings.kafka.bootstrap_servers == "127.0.0.1:1"


def test_the_alert_store_is_sqlite_by_default_and_postgresql_by_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """``store_path`` is the store until ``store_url`` is set; the URL is secret and must be postgresql://."""
    assert Settings().alerting.store_location() == Path("var/cardmon-alerts.db")
    url = "postgresql://cardmon:pg-s3cret@db.bank.internal:5432/cardmon"
    monkeypatch.setenv("CARDMON_ALERTING__STORE_URL", url)
    settings = Settings()
    assert settings.alerting.store_location() == url
    assert "pg-s3cret" not in repr(settings) and "pg-s3cret" not in str(settings.model_dump())
    with pytest.raises(pydantic.ValidationError, match="postgresql:// URL"):
        Settings(alerting={"store_url": "mysql://cardmon@db/cardmon"})


@pytest.mark.parametrize("url", ["postgresq://cm:S3cretTypo@db/c", "postgresql+psycopg://cm:S3cretSA@db/c",
                                 "jdbc:postgresql://db/c?user=cm&password=S3cretJ"])
def test_an_invalid_store_url_is_refused_without_quoting_it(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mistyped alerting.store_url fails validation; the error never repeats the URL or its password."""
    monkeypatch.setenv("CARDMON_ALERTING__STORE_URL", url)
    with pytest.raises(pydantic.ValidationError) as caught:
        Settings()
    assert "store_url must be a postgresql:// URL" in str(caught.value)
    assert "S3cret" not in str(caught.value)


def test_retries_are_bounded_by_time_and_the_fallback_has_a_default() -> None:
    """Deliveries retry for six hours with backoff capped at two minutes; the backup manager is the default fallback, told after fifteen minutes; events older than 30 min are late."""
    alerting = load_settings().alerting
    assert (alerting.retry_for_seconds, alerting.backoff_max_seconds) == (21_600.0, 120.0)
    assert (alerting.fallback, alerting.fallback_after_seconds) == (("backup_manager",), 900.0)
    assert alerting.operations_fallback() is None
    assert alerting.stale_after_seconds == 1800.0
    with pytest.raises(pydantic.ValidationError, match="backoff_max_seconds"):
        Settings(alerting={"backoff_max_seconds": 7200})


def test_an_old_max_attempts_setting_is_refused_with_what_to_set_instead(tmp_path: Path) -> None:
    """A config file that still sets alerting.max_attempts fails to load, saying retries are now bounded by retry_for_seconds."""
    path = tmp_path / "old.yaml"
    path.write_text("alerting:\n  max_attempts: 6\n", encoding="utf-8")
    with pytest.raises(pydantic.ValidationError, match="max_attempts is gone.*retry_for_seconds"):
        load_settings(path)


@pytest.mark.parametrize(("given", "expected"), [
    ("email", ("email",)), (["backup_manager", "jsonl"], ("backup_manager", "jsonl")), ([], ()),
    (None, ())])
def test_the_fallback_takes_one_name_or_a_list(given: object, expected: tuple[str, ...]) -> None:
    """`fallback: email` (the old form), a list, an empty list and null all load."""
    alerting = Settings(alerting={"fallback": given, "fallback_email": "ops@bank.example",
                                  "smtp": {"host": "mail.bank.internal"}}).alerting
    assert alerting.fallback == expected


def test_the_fallback_from_the_environment_is_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """CARDMON_ALERTING__FALLBACK=backup_manager,console is the two targets."""
    monkeypatch.setenv("CARDMON_ALERTING__FALLBACK", "backup_manager,console")
    assert Settings().alerting.fallback == ("backup_manager", "console")


def test_two_operations_fallbacks_are_refused() -> None:
    """The fallback takes the backup manager and at most one operations channel."""
    with pytest.raises(pydantic.ValidationError, match="at most one operations channel"):
        Settings(alerting={"fallback": ["jsonl", "console"]})
