"""cardmon's one settings model.

Values come, highest priority first, from: keyword arguments, ``CARDMON_``
environment variables (nested with ``__``, e.g. ``CARDMON_KAFKA__BOOTSTRAP_SERVERS``),
a YAML file (``CARDMON_CONFIG`` or ``--config``, default ``cardmon.yaml`` when it
exists), then the defaults below. The model is frozen: a running monitor never
changes its settings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

__all__ = [
    "MIN_SECRET_CHARS",
    "AlertingSettings",
    "ApiSettings",
    "EventTimeSettings",
    "FallbackTarget",
    "HealthSettings",
    "KafkaSettings",
    "MetricsSettings",
    "PostgresSettings",
    "RegistrySettings",
    "Settings",
    "SmtpSettings",
    "isolated_settings",
    "load_settings",
]

#: Who the delivery fallback may tell (``alerting.fallback``).
FallbackTarget = Literal["backup_manager", "email", "apprise", "jsonl", "console"]
#: Fewest characters of an API token or link secret: 16 random characters resist guessing.
MIN_SECRET_CHARS = 16

# Errors never quote the input: a store URL, an SMTP password or a token may be in it.
_frozen = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class KafkaSettings(BaseModel):
    """Where events come from and bad ones go.

    ``batch_max_records`` and ``batch_timeout_ms`` bound one micro-batch
    (``AIOKafkaConsumer.getmany``).
    """

    model_config = _frozen
    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "card.transactions"
    dead_letter_topic: str = "card.transactions.dlq"
    group_id: str = "cardmon"
    client_id: str = "cardmon"
    batch_max_records: int = Field(default=5000, ge=1, le=100_000)
    batch_timeout_ms: int = Field(default=200, ge=1, le=60_000)
    auto_offset_reset: str = Field(default="earliest", pattern="^(earliest|latest)$")
    #: How long the group waits for a silent member before rebalancing its partitions away.
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    #: How long (seconds) a batch's transient failures (alert store write, dead-letter
    #: produce, offset commit) are retried before the consumer gives up: ``cardmon run``
    #: then exits 1, uncommitted, so a supervisor restarts it and the batch is redelivered.
    #: The default rides out a database or broker outage of a few minutes.
    retry_timeout_seconds: float = Field(default=300.0, gt=0)
    #: A record batch that cannot be read (bad CRC, unknown or undecodable compression)
    #: holds its partition until it reads; with a value, the consumer skips it after that
    #: many seconds, naming its offsets in a dead letter (docs/operations.md). ``None``
    #: never skips: an operator decides.
    skip_unreadable_after_seconds: float | None = Field(default=None, ge=0)
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None


class RegistrySettings(BaseModel):
    """The VIP registry files (CSV or Parquet) and how often to look for changes."""

    model_config = _frozen
    customers_path: Path | None = None
    managers_path: Path | None = None
    reload_interval_seconds: float = Field(default=30.0, gt=0)


class SmtpSettings(BaseModel):
    """The bank's mail relay for e-mail alerts; ``host`` unset means no e-mail channel."""

    model_config = _frozen
    host: str | None = None
    port: int = 25
    username: str | None = None
    password: SecretStr | None = None
    from_address: str = "cardmon@localhost"
    starttls: bool = False
    use_tls: bool = False
    timeout_seconds: float = 10.0


class PostgresSettings(BaseModel):
    """Timeouts and TCP keepalives of the PostgreSQL alert store's connections (not used for SQLite).

    The server limits are set for each session cardmon opens (libpq ``options``); the
    libpq ones are connection parameters. A parameter given in ``store_url`` itself
    wins over these. Besides them, cardmon gives up on a statement the server has not
    answered within ``statement_timeout_seconds`` plus 5 s (a frozen server, a
    connection that went half-open), drops that connection and opens a new one.
    docs/alert-store.md says what each one bounds.
    """

    model_config = _frozen
    #: libpq ``connect_timeout``: seconds to reach the server and log in (libpq's minimum is 2).
    connect_timeout_seconds: int = Field(default=10, ge=2)
    #: ``statement_timeout``: longest statement (seconds); the server cancels it after that.
    statement_timeout_seconds: float = Field(default=30.0, gt=0)
    #: ``lock_timeout``: longest wait for a row, table or advisory lock (seconds).
    lock_timeout_seconds: float = Field(default=10.0, gt=0)
    #: ``idle_in_transaction_session_timeout``: the server ends a session whose open
    #: transaction has been idle this long (seconds): a stalled client frees its locks.
    idle_in_transaction_timeout_seconds: float = Field(default=60.0, gt=0)
    #: TCP keepalives (libpq ``keepalives_idle``/``_interval``/``_count``): an idle
    #: connection whose peer vanished is found dead after idle + interval x count seconds.
    keepalives_idle_seconds: int = Field(default=30, ge=1)
    keepalives_interval_seconds: int = Field(default=10, ge=1)
    keepalives_count: int = Field(default=3, ge=1)
    #: libpq ``tcp_user_timeout`` (Linux): data sent but unacknowledged this long ends
    #: the connection (seconds; 0: the system's default).
    tcp_user_timeout_seconds: float = Field(default=30.0, ge=0)


class AlertingSettings(BaseModel):
    """The alert store, the delivery channels and their retry schedule."""

    model_config = _frozen
    #: The SQLite alert store of a single instance (used when ``store_url`` is unset).
    store_path: Path = Path("var/cardmon-alerts.db")
    #: PostgreSQL, for several instances in one consumer group:
    #: ``postgresql://user[:password]@host:5432/database``. Secret, as it may hold the
    #: password (libpq's ``PGPASSWORD`` and ``~/.pgpass`` work too).
    store_url: SecretStr | None = None
    #: Timeouts and keepalives of the PostgreSQL store's connections.
    postgres: PostgresSettings = PostgresSettings()
    policy_path: Path | None = None  # None: rules/alerting.yaml
    response_codes_path: Path | None = None  # None: rules/response_codes.yaml
    smtp: SmtpSettings = SmtpSettings()
    webhook_timeout_seconds: float = 10.0
    #: Sinks every alert also goes to: ``console`` prints it, ``jsonl`` appends to ``jsonl_path``.
    sinks: tuple[Literal["console", "jsonl", "alertmanager"], ...] = ()
    jsonl_path: Path = Path("var/alerts.jsonl")
    #: HMAC-SHA256 key for ``X-Cardmon-Signature`` on every webhook; ``None`` = unsigned.
    webhook_signing_secret: SecretStr | None = None
    #: Seconds for one Apprise notification (all of a manager's Apprise targets).
    apprise_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Base URL of the bank's Alertmanager, e.g. ``http://alertmanager:9093`` (sink ``alertmanager``).
    alertmanager_url: str | None = None
    #: Link back to the alert in Alertmanager's ``generatorURL``; ``{alert_id}`` is replaced.
    alertmanager_generator_url: str | None = None
    #: Seconds after the first failure until the alert resolves in Alertmanager (``None``: its resolve_timeout).
    alertmanager_hold_seconds: float | None = Field(default=None, gt=0)
    #: Who is told when a delivery keeps failing (``fallback_after_seconds`` into its
    #: retries, and at their end), while the retries go on: ``backup_manager`` (the
    #: recipient's ``backup_manager_id`` in the registry gets the alert on their own
    #: channels) and at most one operations channel: ``email`` (``fallback_email``, the
    #: operations mailbox), ``apprise`` (``fallback_apprise_url``), ``jsonl``
    #: (``fallback_jsonl_path``) or ``console``. A list or one name; ``[]``: nobody
    #: (an ERROR is still logged and the row counted).
    fallback: Annotated[tuple[FallbackTarget, ...], NoDecode] = ("backup_manager",)
    fallback_email: str | None = None  # the operations mailbox (needs smtp.host)
    fallback_apprise_url: SecretStr | None = None
    fallback_jsonl_path: Path = Path("var/undelivered.jsonl")
    #: Seconds a delivery is retried from its first attempt before it is ``failed``
    #: (then ``cardmon alerts resend`` re-sends it). 0: one attempt.
    retry_for_seconds: float = Field(default=21_600.0, ge=0)
    #: Seconds into a delivery's retries before the fallback is told (once per delivery).
    fallback_after_seconds: float = Field(default=900.0, ge=0)
    backoff_initial_seconds: float = Field(default=1.0, gt=0)
    #: Longest wait between two tries: the most a message arrives after its channel is back.
    backoff_max_seconds: float = Field(default=120.0, gt=0, le=3600)
    #: A VIP failure older than this (event time) when it is processed is *late* (a
    #: replay after an outage): stored, exported and in the digest, but nobody is paged.
    #: ``null``: never late.
    stale_after_seconds: float | None = Field(default=1800.0, gt=0)
    poll_interval_seconds: float = Field(default=0.25, gt=0)
    #: How often unacknowledged high alerts are checked for escalation (seconds).
    escalation_interval_seconds: float = Field(default=30.0, gt=0)
    #: How often rate-cap summaries that are due are claimed and enqueued (seconds).
    summary_interval_seconds: float = Field(default=30.0, gt=0)
    #: Zone for alert times when a manager has none.
    default_timezone: str = "UTC"
    #: On SIGTERM, seconds in-flight sends get to finish and be recorded; then they are
    #: cancelled (their rows are sent again after a restart).
    shutdown_drain_seconds: float = Field(default=15.0, gt=0)


    def store_location(self) -> Path | str:
        """Where the alert store is: the ``store_url`` (with its password) if set, else ``store_path``."""
        return self.store_url.get_secret_value() if self.store_url is not None else self.store_path

    @model_validator(mode="after")
    def _store_url_is_postgresql(self) -> AlertingSettings:
        if self.store_url is not None and not self.store_url.get_secret_value().startswith(
                ("postgresql://", "postgres://")):
            raise ValueError("alerting.store_url must be a postgresql:// URL")
        return self

    @model_validator(mode="before")
    @classmethod
    def _no_max_attempts(cls, data: Any) -> Any:
        # Refused, not ignored: an operator who set it expects a count to bound retries,
        # and six attempts (the old default) lost every message of a 35 s relay outage.
        if isinstance(data, dict) and "max_attempts" in data:
            raise ValueError(
                "alerting.max_attempts is gone: deliveries are retried for a time, not a "
                "number of attempts. Remove it and set alerting.retry_for_seconds (default "
                "21600, 6 h) and alerting.backoff_max_seconds (default 120) if the defaults "
                "do not suit you")
        return data

    @field_validator("fallback", mode="before")
    @classmethod
    def _fallback_list(cls, value: Any) -> Any:
        # One name (the old form, "fallback: email") or a list; from the environment,
        # "backup_manager,email" or a JSON list.
        if value is None:
            return ()
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return tuple(part.strip() for part in text.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _sinks_and_fallback_have_targets(self) -> AlertingSettings:
        if "alertmanager" in self.sinks and not self.alertmanager_url:
            raise ValueError("sink 'alertmanager' needs alerting.alertmanager_url")
        operations = [target for target in self.fallback if target != "backup_manager"]
        if len(operations) > 1:
            raise ValueError("alerting.fallback takes backup_manager and at most one operations "
                             "channel (email, apprise, jsonl or console)")
        if "email" in operations and not (self.fallback_email and self.smtp.host):
            raise ValueError("fallback 'email' needs alerting.fallback_email and alerting.smtp.host")
        if "apprise" in operations and self.fallback_apprise_url is None:
            raise ValueError("fallback 'apprise' needs alerting.fallback_apprise_url")
        return self

    def operations_fallback(self) -> FallbackTarget | None:
        """The operations channel of ``fallback`` (``email``, ``apprise``, ``jsonl``, ``console``), if any."""
        return next((target for target in self.fallback if target != "backup_manager"), None)


class HealthSettings(BaseModel):
    """Terminal health: the terminal registry, the traffic baseline and device status.

    ``terminals_path`` (CSV or Parquet: terminal ID, model, region, branch, time zone,
    opening hours) makes silent detection schedule-aware; without it every terminal
    counts as open 24/7 in UTC. ``baseline_path`` is a Parquet baseline of expected
    transactions per hour of the week (``monitor.health.Baseline``).
    """

    model_config = _frozen
    terminals_path: Path | None = None
    baseline_path: Path | None = None
    rules_path: Path | None = None  # None: rules/health.yaml
    status_topic: str = "card.terminal-status"
    status_dead_letter_topic: str = "card.terminal-status.dlq"
    #: Consume device status events (``status_topic``) as well as transactions.
    consume_status: bool = True
    #: How often terminal health states are recomputed (seconds).
    evaluate_interval_seconds: float = Field(default=15.0, gt=0)
    #: How often ``terminals_path`` is checked for changes and reread (seconds).
    terminals_reload_interval_seconds: float = Field(default=30.0, gt=0)


class EventTimeSettings(BaseModel):
    """Event time across partitions (``monitor.pipeline.watermark``; ``docs/incidents.md``).

    ``allowed_lateness_seconds``: how far behind its partition's latest earlier event
    (and the watermark behind the partitions) an event may be and still count for
    incidents and terminal health; later ones are late (counted, still alerted).
    ``stalled_partition_seconds``: wall-clock time after which a partition that has
    unread messages but makes no progress stops holding the watermark back.
    """

    model_config = _frozen
    allowed_lateness_seconds: float = Field(default=10.0, ge=0)
    stalled_partition_seconds: float = Field(default=60.0, gt=0)


class ApiSettings(BaseModel):
    """The alert HTTP API and the acknowledgement links in notifications.

    The JSON API needs ``token`` (bearer); acknowledgement links need ``link_secret``
    (signed, expiring tokens bound to the alert and the manager).
    """

    model_config = _frozen
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8465, ge=0, le=65535)
    #: Base URL managers reach the API at (used in links); ``None``: ``http://{host}:{port}``.
    public_url: str | None = None
    #: Bearer token of JSON callers (16+ characters); ``None``: the JSON API answers 403.
    token: SecretStr | None = None
    #: Signing secret of acknowledgement links (16+ characters); ``None``: no links.
    link_secret: SecretStr | None = Field(default=None, min_length=MIN_SECRET_CHARS)
    link_max_age_seconds: int = Field(default=172_800, gt=0)

    @field_validator("token")
    @classmethod
    def _token_is_long_enough(cls, token: SecretStr | None) -> SecretStr | None:
        # The message says how to make one and never quotes the value.
        if token is not None and len(token.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters "
                             "(make one with `openssl rand -hex 32`)")
        return token


class MetricsSettings(BaseModel):
    """Where ``/metrics`` is served."""

    model_config = _frozen
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)
    #: How often the gauges read from the alert store (outbox backlog, failed
    #: deliveries, alerts by state, incidents) are refreshed (seconds).
    store_gauges_interval_seconds: float = Field(default=5.0, gt=0)


class Settings(BaseSettings):
    """All of cardmon's settings (frozen)."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,
        env_prefix="CARDMON_",
        env_nested_delimiter="__",
    )
    kafka: KafkaSettings = KafkaSettings()
    registry: RegistrySettings = RegistrySettings()
    alerting: AlertingSettings = AlertingSettings()
    health: HealthSettings = HealthSettings()
    event_time: EventTimeSettings = EventTimeSettings()
    api: ApiSettings = ApiSettings()
    metrics: MetricsSettings = MetricsSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = os.environ.get("CARDMON_CONFIG", "cardmon.yaml")
        return (
            init_settings,
            env_settings,
            YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file),
            file_secret_settings,
        )


def load_settings(config_path: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from a YAML file, the environment and ``overrides``.

    Args:
        config_path: YAML file; ``None`` uses ``CARDMON_CONFIG`` or ``./cardmon.yaml`` if present.
        overrides: top-level sections (``kafka=...``) that win over everything else.

    Raises:
        FileNotFoundError: ``config_path`` (or ``CARDMON_CONFIG``) names a file that does
            not exist; only the implicit ``./cardmon.yaml`` may be absent.
        pydantic.ValidationError: a value is invalid (the message names it).
    """
    if config_path is None and os.environ.get("CARDMON_CONFIG"):
        # An operator who points at a file means it: a typo must not silently run on defaults.
        config_path = Path(os.environ["CARDMON_CONFIG"])
    if config_path is not None:
        if not config_path.is_file():
            raise FileNotFoundError(f"config file not found: {config_path}")
        previous = os.environ.get("CARDMON_CONFIG")
        os.environ["CARDMON_CONFIG"] = str(config_path)
        try:
            return Settings(**overrides)
        finally:
            if previous is None:
                del os.environ["CARDMON_CONFIG"]
            else:
                os.environ["CARDMON_CONFIG"] = previous
    return Settings(**overrides)


class _IsolatedSettings(Settings):
    """Settings that read only their keyword arguments (no environment, no YAML file)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def isolated_settings(**values: Any) -> Settings:
    """Settings from ``values`` and the defaults only, ignoring ``CARDMON_*`` and any YAML file.

    For self-contained runs (``cardmon demo``, the benchmark): an operator's
    environment must not send demo alerts through the bank's real mail relay.
    """
    return _IsolatedSettings(**values)
