"""Settings of what the monitor reads: Kafka, the VIP registry, terminal health inputs, event time."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr

from monitor.config.section import SECTION_CONFIG

__all__ = ["EventTimeSettings", "HealthSettings", "KafkaSettings", "RegistrySettings"]


class KafkaSettings(BaseModel):
    """Where events come from and bad ones go.

    ``batch_max_records`` and ``batch_timeout_ms`` bound one micro-batch
    (``AIOKafkaConsumer.getmany``).
    """

    model_config = SECTION_CONFIG
    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "card.transactions"
    dead_letter_topic: str = "card.transactions.dlq"
    group_id: str = "cardmon"
    client_id: str = "cardmon"
    batch_max_records: int = Field(default=5000, ge=1, le=100_000)
    batch_timeout_ms: int = Field(default=200, ge=1, le=60_000)
    #: Child processes that decode the batches read while catching up (JSON to the batch
    #: frame) off the main process's GIL, overlapped with the previous batch's processing
    #: (:mod:`monitor.pipeline.decode_pool`; started the first time the consumer falls
    #: behind). 0 decodes in-process. The results are the same either way; more than 1
    #: rarely helps (at most two batches are in flight: the one handled and the one read
    #: ahead).
    decode_processes: int = Field(default=1, ge=0, le=8)
    auto_offset_reset: str = Field(default="earliest", pattern="^(earliest|latest)$")
    #: Longest time the broker may hold a fetch that has no new records yet (ms). Kafka
    #: answers as soon as records arrive; a broker that answers only at the end (Tansu,
    #: the embedded test broker) makes a live record wait up to this long, so it is short.
    fetch_max_wait_ms: int = Field(default=50, ge=1, le=10_000)
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

    model_config = SECTION_CONFIG
    customers_path: Path | None = None
    managers_path: Path | None = None
    reload_interval_seconds: float = Field(default=30.0, gt=0)


class HealthSettings(BaseModel):
    """Terminal health: the terminal registry, the traffic baseline and device status.

    ``terminals_path`` (CSV or Parquet: terminal ID, model, region, branch, time zone,
    opening hours) makes silent detection schedule-aware; without it every terminal
    counts as open 24/7 in UTC. ``baseline_path`` is a Parquet baseline of expected
    transactions per hour of the week (``monitor.health.Baseline``).
    """

    model_config = SECTION_CONFIG
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

    model_config = SECTION_CONFIG
    allowed_lateness_seconds: float = Field(default=10.0, ge=0)
    stalled_partition_seconds: float = Field(default=60.0, gt=0)
