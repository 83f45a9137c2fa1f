"""Fleet health: which terminals fail, where, how, and how fast the issuers answer.

For operations (ATM/POS support, the switch team). Reads the terminal series of
the monitor, the terminal-health metrics of issue 4 (``cardmon_terminals``,
``cardmon_terminal_health_state``, ``cardmon_worst_terminal_failure_ratio``,
``cardmon_terminal_vip_impact_clients`` (repair priority),
``cardmon_group_failure_ratio``, ``cardmon_terminal_component_state``) and the
recording rules of
``rules/prometheus/cardmon.rules.yml``.
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from dashboards.common import (
    Query,
    bar_gauge,
    channel_variable,
    new_dashboard,
    stat_panel,
    table_panel,
    timeseries_panel,
)

__all__ = ["UID", "build"]

#: Stable dashboard UID (``push`` overwrites by it).
UID: Final = "cardmon-fleet-health"


def build() -> Dashboard:
    """The "cardmon / Fleet health" dashboard.

    Returns:
        The dashboard builder.
    """
    return (
        new_dashboard(
            "cardmon / Fleet health", UID,
            "Terminal fleet: health states, worst and quietest terminals, failure ratio by "
            "region, channel and outcome class (ISO 8583 response code classes), and "
            "authorization latency quantiles.",
        )
        .with_variable(channel_variable())
        .with_row(Row("Fleet now"))
        .with_panel(stat_panel(
            "Terminals by health state",
            "Terminals in each health state (ok, degraded, failing, silent, offline), from "
            "cardmon_terminals{state}. Decommissioned terminals are not counted.",
            "short",
            [Query("sum by (state) (cardmon_terminals)", "{{state}}", instant=True)],
            width=10,
        ))
        .with_panel(stat_panel(
            "Silent terminals",
            "Terminals open (by their opening hours) that stopped sending the traffic their "
            "hour-of-week baseline expects: cardmon_terminals{state=\"silent\"}.",
            "short",
            [Query('sum(cardmon_terminals{state="silent"})', "silent", instant=True)],
            width=4, warn=1, alarm=5,
        ))
        .with_panel(stat_panel(
            "Failed share by channel (5 min)",
            "Share of transactions with any outcome but approved, per transaction channel, "
            "over 5 minutes (recording rule "
            "channel:cardmon_transactions_failed_per_transactions:ratio_rate5m).",
            "percentunit",
            [Query('channel:cardmon_transactions_failed_per_transactions:ratio_rate5m'
                   '{channel=~"$channel"}', "{{channel}}", instant=True)],
            width=6, warn=0.1, alarm=0.25,
        ))
        .with_panel(stat_panel(
            "Transactions per second",
            "Transactions per second over 5 minutes, every outcome "
            "(recording rule channel:cardmon_transactions:rate5m).",
            "reqps",
            [Query('sum(channel:cardmon_transactions:rate5m{channel=~"$channel"})', "all",
                   instant=True)],
            width=4,
        ))
        .with_row(Row("Worst terminals"))
        .with_panel(table_panel(
            "Worst terminals (1 h failure ratio)",
            "The monitor's own top-N terminals by failure ratio over its 1-hour window, above "
            "the minimum volume (cardmon_worst_terminal_failure_ratio; rank 1 is the worst).",
            [Query("cardmon_worst_terminal_failure_ratio", "{{rank}} {{terminal_id}}",
                   instant=True)],
            unit="percentunit",
        ))
        .with_panel(bar_gauge(
            "Technical failure ratio, worst 10 terminals (5 min)",
            "Share of each terminal's transactions that failed with a technical or terminal "
            "outcome over 5 minutes (recording rule "
            "terminal:cardmon_terminal_technical_failures_per_transactions:ratio_rate5m). "
            "Terminals without such a failure have no bar.",
            "percentunit",
            [Query("topk(10, terminal:cardmon_terminal_technical_failures_per_transactions"
                   ":ratio_rate5m)", "{{terminal_id}}", instant=True)],
            max_value=1, warn=0.2, alarm=0.5,
        ))
        .with_panel(table_panel(
            "Terminals not ok",
            "Every terminal whose health state is not ok, with its state "
            "(cardmon_terminal_health_state: 1 degraded, 2 failing, 3 silent, 4 offline).",
            [Query("cardmon_terminal_health_state > 0", "{{terminal_id}}", instant=True)],
            health_states=True,
        ))
        .with_panel(table_panel(
            "Quietest terminals",
            "The 20 terminals whose latest transaction is oldest, in seconds since it "
            "(time() - cardmon_terminal_last_transaction_timestamp_seconds). A closed terminal "
            "is expected here; the silent state accounts for opening hours.",
            [Query("topk(20, time() - cardmon_terminal_last_transaction_timestamp_seconds)",
                   "{{terminal_id}}", instant=True)],
            unit="s",
        ))
        .with_panel(table_panel(
            "Terminals hurting VIP clients most (24 h)",
            "Repair priority: the 10 terminals where most distinct VIP clients failed in the "
            "last 24 hours, their own failure classes only (technical, terminal, card), issuer "
            "and network outages left out (cardmon_terminal_vip_impact_clients; failures and "
            "managers in the sibling series; `cardmon terminals impact` lists more).",
            [Query('max by (terminal_id) (cardmon_terminal_vip_impact_clients{window="24h"})',
                   "{{terminal_id}}", instant=True)],
        ))
        .with_panel(table_panel(
            "Terminals hurting VIP clients most (7 days)",
            "The same ranking over the last 7 days: a terminal that keeps failing VIP clients "
            "across the week, not one bad hour (cardmon_terminal_vip_impact_clients{window=\"7d\"}).",
            [Query('max by (terminal_id) (cardmon_terminal_vip_impact_clients{window="7d"})',
                   "{{terminal_id}}", instant=True)],
        ))
        .with_panel(table_panel(
            "Device components not ok",
            "Terminal components reporting a state other than ok in their device status "
            "events (card reader, cash dispenser, cassette, receipt printer, PIN pad, network: "
            "low, empty, fault, offline), from cardmon_terminal_component_state.",
            [Query("cardmon_terminal_component_state", "{{terminal_id}} {{component}} {{state}}",
                   instant=True)],
            width=24, height=6,
        ))
        .with_row(Row("Failures"))
        .with_panel(timeseries_panel(
            "Failure ratio by region",
            "Share of failed transactions per region of the terminal registry, per window "
            "of the monitor (cardmon_group_failure_ratio{dimension=\"region\"}).",
            "percentunit",
            [Query('cardmon_group_failure_ratio{dimension="region"}', "{{group}} ({{window}})")],
            max_value=1,
        ))
        .with_panel(timeseries_panel(
            "Failure ratio by terminal model",
            "Share of failed transactions per terminal model (from the terminal registry; "
            "unknown when a terminal is not in it), per window of the monitor "
            "(cardmon_group_failure_ratio{dimension=\"model\"}).",
            "percentunit",
            [Query('cardmon_group_failure_ratio{dimension="model"}', "{{group}} ({{window}})")],
            max_value=1,
        ))
        .with_panel(timeseries_panel(
            "Failure ratio by outcome class",
            "Share of each channel's transactions in each failing outcome class (technical, "
            "terminal, card, customer, fraud, unknown) over 5 minutes (recording rule "
            "channel_outcome:cardmon_transactions_per_transactions:ratio_rate5m).",
            "percentunit",
            [Query('channel_outcome:cardmon_transactions_per_transactions:ratio_rate5m'
                   '{channel=~"$channel", outcome!="approved"}', "{{channel}} {{outcome}}")],
            max_value=1,
        ))
        .with_panel(timeseries_panel(
            "Failed share by channel",
            "Share of transactions with any outcome but approved, per channel, over 5 minutes "
            "(recording rule channel:cardmon_transactions_failed_per_transactions:ratio_rate5m).",
            "percentunit",
            [Query('channel:cardmon_transactions_failed_per_transactions:ratio_rate5m'
                   '{channel=~"$channel"}', "{{channel}}")],
            max_value=1,
        ))
        .with_panel(timeseries_panel(
            "Transactions per second by outcome class",
            "Transactions per second per channel and outcome class over 5 minutes "
            "(recording rule channel_outcome:cardmon_transactions:rate5m).",
            "reqps",
            [Query('channel_outcome:cardmon_transactions:rate5m{channel=~"$channel"}',
                   "{{channel}} {{outcome}}")],
        ))
        .with_row(Row("Authorization latency"))
        .with_panel(timeseries_panel(
            "Authorization latency p50 / p95 / p99",
            "Request-to-issuer-response time in seconds per channel, quantiles 0.5, 0.95 and "
            "0.99 over 5 minutes (recording rule "
            "channel:cardmon_authorization_latency_seconds:histogram_quantile_rate5m; "
            "histogram buckets, so values are bucket interpolations).",
            "s",
            [Query('channel:cardmon_authorization_latency_seconds:histogram_quantile_rate5m'
                   '{channel=~"$channel"}', "{{channel}} q{{quantile}}")],
            width=16,
        ))
        .with_panel(stat_panel(
            "Authorization latency p99 (5 min)",
            "99th percentile of authorization latency in seconds per channel over 5 minutes. "
            "Card schemes time out stand-in at 2-5 s.",
            "s",
            [Query('channel:cardmon_authorization_latency_seconds:histogram_quantile_rate5m'
                   '{channel=~"$channel", quantile="0.99"}', "{{channel}}", instant=True)],
            width=8, height=8, warn=2, alarm=5,
        ))
    )
