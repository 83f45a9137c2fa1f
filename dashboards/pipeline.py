"""Pipeline: is the monitor keeping up, and what does it throw away.

For whoever runs cardmon. Reads the consumer, batch, dead-letter, alert-delivery,
registry and scheduler metrics of the monitor and the pipeline recording rules of
``rules/prometheus/cardmon.rules.yml``.
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from dashboards.common import (
    QUANTILES,
    Query,
    bar_gauge,
    new_dashboard,
    stat_panel,
    timeseries_panel,
)

__all__ = ["UID", "build"]

#: Stable dashboard UID (``push`` overwrites by it).
UID: Final = "cardmon-pipeline"


def build() -> Dashboard:
    """The "cardmon / Pipeline" dashboard.

    Returns:
        The dashboard builder.
    """
    return (
        new_dashboard(
            "cardmon / Pipeline", UID,
            "The monitor itself: Kafka throughput and consumer lag, dead letters by rejection "
            "reason, micro-batch duration and size, alert delivery failures, VIP registry "
            "reloads and scheduled job events.",
        )
        .with_row(Row("Throughput"))
        .with_panel(stat_panel(
            "Seconds since the last batch",
            "Seconds since a micro-batch last finished "
            "(time() - cardmon_last_batch_timestamp_seconds). It grows while the consumer is "
            "stalled; it also grows when the topic is simply idle.",
            "s",
            [Query("time() - max by (job) (cardmon_last_batch_timestamp_seconds)", "{{job}}",
                   instant=True)],
            width=6, warn=30, alarm=120,
        ))
        .with_panel(stat_panel(
            "Messages consumed per second",
            "Kafka messages consumed from the transaction topic per second, valid or not "
            "(rate of cardmon_events_consumed_total).",
            "reqps",
            [Query("sum by (job) (rate(cardmon_events_consumed_total[$__rate_interval]))",
                   "{{job}}", instant=True)],
            width=6,
        ))
        .with_panel(timeseries_panel(
            "Throughput",
            "Messages consumed per second and decoded transactions per second over 5 minutes "
            "(recording rule job:cardmon_transactions:rate5m).",
            "reqps",
            [Query("sum by (job) (rate(cardmon_events_consumed_total[$__rate_interval]))",
                   "consumed {{job}}"),
             Query("job:cardmon_transactions:rate5m", "transactions {{job}}")],
        ))
        .with_panel(timeseries_panel(
            "Transactions per second by channel",
            "Decoded transactions per second per channel over 5 minutes "
            "(recording rule channel:cardmon_transactions:rate5m).",
            "reqps",
            [Query("channel:cardmon_transactions:rate5m", "{{channel}}")],
            width=24,
        ))
        .with_row(Row("Kafka consumer lag"))
        .with_panel(timeseries_panel(
            "Consumer lag by topic",
            "Messages between the committed offset and the log end offset, summed over "
            "partitions and monitor instances (recording rule "
            "topic:cardmon_consumer_lag_messages:sum).",
            "short",
            [Query("topic:cardmon_consumer_lag_messages:sum", "{{topic}}")],
        ))
        .with_panel(timeseries_panel(
            "Consumer lag by partition",
            "Messages behind per partition owned by each monitor instance "
            "(cardmon_consumer_lag_messages).",
            "short",
            [Query("cardmon_consumer_lag_messages", "{{topic}}/{{partition}} {{instance}}")],
        ))
        .with_row(Row("Dead letters"))
        .with_panel(timeseries_panel(
            "Dead letters per second by reason",
            "Messages written (PAN-scrubbed) to the dead-letter topic per second over 5 minutes, "
            "per decoder rejection reason (recording rule reason:cardmon_dead_letters:rate5m).",
            "reqps",
            [Query("reason:cardmon_dead_letters:rate5m", "{{reason}}")],
        ))
        .with_panel(timeseries_panel(
            "Dead-letter share of consumed messages",
            "Dead letters per consumed message over 5 minutes (recording rule "
            "job:cardmon_dead_letters_per_events_consumed:ratio_rate5m).",
            "percentunit",
            [Query("job:cardmon_dead_letters_per_events_consumed:ratio_rate5m", "{{job}}")],
        ))
        .with_panel(bar_gauge(
            "Rejected messages in range by reason",
            "Messages that broke the event contract over the selected time range, per decoder "
            "rejection reason (cardmon_events_rejected_total); reasons with none are hidden.",
            "short",
            [Query("sum by (reason) (increase(cardmon_events_rejected_total[$__range])) > 0",
                   "{{reason}}", instant=True)],
            width=24, height=6,
        ))
        .with_row(Row("Micro-batches"))
        .with_panel(timeseries_panel(
            "Batch duration p50 / p95 / p99",
            "Wall-clock seconds to process one micro-batch, decode to commit "
            "(cardmon_batch_duration_seconds histogram). Past 10 s the consumer risks "
            "max.poll.interval.ms.",
            "s",
            [Query(f"histogram_quantile({q}, sum by (le) "
                   "(rate(cardmon_batch_duration_seconds_bucket[$__rate_interval])))", f"q{q}")
             for q in QUANTILES],
        ))
        .with_panel(timeseries_panel(
            "Batch size p50 / p95",
            "Kafka messages per micro-batch (cardmon_batch_size_messages histogram).",
            "short",
            [Query(f"histogram_quantile({q}, sum by (le) "
                   "(rate(cardmon_batch_size_messages_bucket[$__rate_interval])))", f"q{q}")
             for q in QUANTILES[:2]],
        ))
        .with_row(Row("Alert delivery"))
        .with_panel(timeseries_panel(
            "Alert delivery failures by channel",
            "Alert delivery attempts per second that will be retried (retry) or were given up "
            "(failed), per delivery channel (cardmon_alerts_total).",
            "reqps",
            [Query('sum by (channel, status) '
                   '(rate(cardmon_alerts_total{status=~"retry|failed"}[$__rate_interval]))',
                   "{{channel}} {{status}}")],
        ))
        .with_panel(timeseries_panel(
            "Alerts pending in the outbox",
            "Alerts waiting for delivery in the outbox (cardmon_alerts_pending).",
            "short",
            [Query("cardmon_alerts_pending", "{{instance}}")],
        ))
        .with_row(Row("VIP registry and scheduled jobs"))
        .with_panel(stat_panel(
            "VIP clients in the registry",
            "VIP clients in the loaded client registry (cardmon_registry_customers).",
            "short",
            [Query("cardmon_registry_customers", "{{instance}}", instant=True)],
            width=6,
        ))
        .with_panel(stat_panel(
            "Seconds since the registry reload",
            "Seconds since the last successful VIP registry reload "
            "(time() - cardmon_registry_last_reload_timestamp_seconds). The registry is "
            "reloaded only when its files change, so a large value alone is not a fault.",
            "s",
            [Query("time() - cardmon_registry_last_reload_timestamp_seconds", "{{instance}}",
                   instant=True)],
            width=6,
        ))
        .with_panel(timeseries_panel(
            "Scheduled job events",
            "Events of the scheduled jobs per interval (cardmon_scheduler_job_events_total): "
            "executed, missed (started too late: the event loop was blocked), max_instances "
            "(the previous run was still running), error.",
            "short",
            [Query("sum by (job, event) "
                   "(increase(cardmon_scheduler_job_events_total[$__rate_interval]))",
                   "{{job}} {{event}}")],
        ))
        .with_panel(stat_panel(
            "Version",
            "cardmon version of each scraped monitor (cardmon_build_info).",
            "short",
            [Query("count by (version) (cardmon_build_info)", "{{version}}", instant=True)],
            width=24, height=3,
        ))
    )
