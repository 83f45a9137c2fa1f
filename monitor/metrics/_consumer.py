"""The consumer's fault metrics: unreadable partitions and skipped batches, retried steps, lost dead letters.

Labels are Kafka topic and partition, the batch step and the rejection reason: all
bounded, none personal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["CONSUMER_STEPS", "ConsumerFaultMetrics"]

#: The steps of a batch that are retried when they fail transiently (monitor/pipeline/consumer.py).
CONSUMER_STEPS: Final[tuple[str, ...]] = ("store", "dead_letter", "commit")


class ConsumerFaultMetrics:
    """What went wrong reading or finishing a batch, per topic and partition or step.

    Args:
        registry: where the metrics are registered.
        reasons: rejection reasons whose lost-dead-letter series start at zero.
    """

    def __init__(self, registry: CollectorRegistry, *, reasons: Sequence[str] = ()) -> None:
        self.read_errors = Counter(
            "cardmon_partition_read_errors_total",
            "Failed attempts to read a partition's next record batch (corrupt: bad CRC, "
            "undecodable compression), by topic and partition.",
            ["topic", "partition"],
            registry=registry,
        )
        self.unreadable = Gauge(
            "cardmon_partition_unreadable",
            "1 while a partition is held at a record batch that cannot be read (its other "
            "messages wait; see docs/operations.md), else 0.",
            ["topic", "partition"],
            registry=registry,
        )
        self.skipped = Counter(
            "cardmon_batches_skipped_total",
            "Unreadable record batches skipped (kafka.skip_unreadable_after_seconds; a dead "
            "letter names their offsets), by topic and partition.",
            ["topic", "partition"],
            registry=registry,
        )
        self.retries = Counter(
            "cardmon_consumer_retries_total",
            "Transient failures of a batch step that were retried (store: the alert store "
            "write; dead_letter: the dead-letter produce; commit: the offset commit), by topic.",
            ["topic", "step"],
            registry=registry,
        )
        self.dead_letters_lost = Counter(
            "cardmon_dead_letters_lost_total",
            "Rejected messages whose dead-letter copy the broker refused even without key "
            "and value (only logged), by rejection reason.",
            ["reason"],
            registry=registry,
        )

        for reason in reasons:
            self.dead_letters_lost.labels(reason)

    def watch_partition(self, topic: str, partition: int) -> None:
        """Start a newly assigned partition's series at zero, so ``increase()`` sees the first error."""
        self.read_errors.labels(topic, str(partition))
        self.skipped.labels(topic, str(partition))
        self.unreadable.labels(topic, str(partition)).set(0)
        for step in CONSUMER_STEPS:
            self.retries.labels(topic, step)

    def observe_read_error(self, topic: str, partition: int) -> None:
        """Count one failed read of a partition and mark it unreadable."""
        self.read_errors.labels(topic, str(partition)).inc()
        self.unreadable.labels(topic, str(partition)).set(1)

    def set_readable(self, topic: str, partition: int) -> None:
        """The partition was read again after an unreadable batch (or was skipped past it)."""
        self.unreadable.labels(topic, str(partition)).set(0)

    def observe_batch_skipped(self, topic: str, partition: int) -> None:
        """Count one unreadable record batch skipped on the operator's setting."""
        self.skipped.labels(topic, str(partition)).inc()

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop the unreadable gauge of a partition this member no longer owns."""
        try:
            self.unreadable.remove(topic, str(partition))
        except KeyError:
            pass

    def observe_retry(self, topic: str, step: str) -> None:
        """Count one transient failure of a batch step that will be retried."""
        self.retries.labels(topic, step).inc()

    def observe_dead_letter_lost(self, reason: str) -> None:
        """Count one rejected message whose dead-letter copy could not be written at all."""
        self.dead_letters_lost.labels(reason).inc()
