"""Settings of the alert store (SQLite or PostgreSQL) and of delivery: channels, retries, fallback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from monitor.config.section import SECTION_CONFIG

__all__ = ["AlertingSettings", "FallbackTarget", "PostgresSettings", "ScaleOutSettings", "SmtpSettings"]

#: Who the delivery fallback may tell (``alerting.fallback``).
FallbackTarget = Literal["backup_manager", "email", "apprise", "jsonl", "console"]


class SmtpSettings(BaseModel):
    """The bank's mail relay for e-mail alerts; ``host`` unset means no e-mail channel."""

    model_config = SECTION_CONFIG
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

    model_config = SECTION_CONFIG
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


class ScaleOutSettings(BaseModel):
    """Several instances in one consumer group judging fleet-scope incidents as one (docs/scale-out.md).

    With ``enabled``, each instance writes its partitions' partial incident counts and
    event-time progress to the PostgreSQL store and one instance at a time (the judge,
    holder of a lease) judges every partition's merged counts. Needs
    ``alerting.store_url`` (refused without it); off, each instance judges the
    partitions it reads, as before.
    """

    model_config = SECTION_CONFIG
    enabled: bool = False
    #: How long the judge's lease lasts without renewal: an instance that stops (or
    #: loses the database) is replaced as judge after this long.
    lease_seconds: float = Field(default=15.0, gt=0)
    #: How often each instance writes its partials and asks to judge (seconds); a
    #: batch wakes it sooner.
    interval_seconds: float = Field(default=0.25, gt=0)

    @model_validator(mode="after")
    def _lease_outlives_rounds(self) -> ScaleOutSettings:
        # The judge renews its lease once per round: a lease shorter than a few rounds
        # lapses between renewals and the judge changes hands every round.
        if self.lease_seconds < 3 * self.interval_seconds:
            raise ValueError(
                f"alerting.scale_out.lease_seconds ({self.lease_seconds:g}) must be at least three "
                f"rounds of interval_seconds ({self.interval_seconds:g}): the judge renews it once a round")
        return self


class AlertingSettings(BaseModel):
    """The alert store, the delivery channels and their retry schedule."""

    model_config = SECTION_CONFIG
    #: The SQLite alert store of a single instance (used when ``store_url`` is unset).
    store_path: Path = Path("var/cardmon-alerts.db")
    #: PostgreSQL, for several instances in one consumer group:
    #: ``postgresql://user[:password]@host:5432/database``. Secret, as it may hold the
    #: password (libpq's ``PGPASSWORD`` and ``~/.pgpass`` work too).
    store_url: SecretStr | None = None
    #: Timeouts and keepalives of the PostgreSQL store's connections.
    postgres: PostgresSettings = PostgresSettings()
    #: Fleet-scope incidents judged over every partition by several instances (PostgreSQL only).
    scale_out: ScaleOutSettings = ScaleOutSettings()
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
    #: The recovery watch (docs/recovery.md): after a VIP failure alert, how long (event
    #: time, seconds from the alert's last failure) cardmon waits for the client to
    #: complete an approved transaction of the same channel and type (*recovered*)
    #: before calling it *abandoned*. ``0`` or ``null``: no watch.
    recovery_window_seconds: float | None = Field(default=1800.0, ge=0)
    #: How often the recovery watch is also decided without a batch (seconds): watches
    #: other instances wrote, and a quiet stream.
    recovery_interval_seconds: float = Field(default=30.0, gt=0)
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
        if self.scale_out.enabled and self.store_url is None:
            raise ValueError("alerting.scale_out.enabled needs the shared PostgreSQL store "
                             "(alerting.store_url): a SQLite store belongs to one instance")
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
