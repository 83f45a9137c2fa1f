"""VIP experience: failed transactions of VIP clients and the alerts to their managers.

For the card business and the relationship-manager desk. Reads
``cardmon_vip_failures_total{tier,outcome}``, ``cardmon_alerts_total{channel,status}``
(``channel`` is the delivery channel: email, webhook, console, jsonl),
``cardmon_alerts_pending`` and ``cardmon_alert_delivery_duration_seconds``, and what the
managers did with the alerts: ``cardmon_alerts_acknowledged_total{severity,via}``,
``cardmon_alerts_escalated_total{severity,step}``, ``cardmon_alerts_resolved_total{severity}``,
``cardmon_alert_time_to_acknowledge_seconds`` and ``cardmon_stored_alerts{state,severity}``
(counted from the alert store's history, so acknowledgements through the CLI count too);
and whether the client got through after a failure: the recovery watch's
``cardmon_vip_recoveries_total{result,outcome,channel}`` (``result``: recovered or
abandoned; ``outcome``: the first failure's outcome class; ``channel``: ATM, POS, ECOM),
its ratio recorded as ``channel:cardmon_vip_recoveries_recovered_per_decided:ratio_rate1h``,
and ``cardmon_vip_recovery_seconds`` (failure to recovery).
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
    tier_variable,
    timeseries_panel,
)

__all__ = ["UID", "build"]

#: Stable dashboard UID (``push`` overwrites by it).
UID: Final = "cardmon-vip-experience"


def build() -> Dashboard:
    """The "cardmon / VIP experience" dashboard.

    Returns:
        The dashboard builder.
    """
    return (
        new_dashboard(
            "cardmon / VIP experience", UID,
            "Failed transactions of VIP clients by tier and outcome class, and the alerts "
            "sent to their relationship managers: attempts by delivery channel and status, "
            "outbox backlog and delivery time; acknowledgements, escalations and time to "
            "acknowledge.",
        )
        .with_variable(tier_variable())
        .with_row(Row("VIP failures"))
        .with_panel(stat_panel(
            "VIP failures in range by tier",
            "Failed transactions (any outcome but approved) of VIP clients over the selected "
            "time range, per tier (increase of cardmon_vip_failures_total).",
            "short",
            [Query('sum by (tier) (increase(cardmon_vip_failures_total{tier=~"$tier"}[$__range]))',
                   "{{tier}}", instant=True)],
            width=8, height=6,
        ))
        .with_panel(timeseries_panel(
            "VIP failures per second by tier",
            "Failed transactions of VIP clients per second over 5 minutes, per tier "
            "(recording rule tier:cardmon_vip_failures:rate5m).",
            "reqps",
            [Query('tier:cardmon_vip_failures:rate5m{tier=~"$tier"}', "{{tier}}")],
            width=16, height=6,
        ))
        .with_panel(timeseries_panel(
            "VIP failures by tier and outcome class",
            "Failed transactions of VIP clients per second per tier and outcome class "
            "(technical, terminal, card, customer, fraud, unknown).",
            "reqps",
            [Query('sum by (tier, outcome) '
                   '(rate(cardmon_vip_failures_total{tier=~"$tier"}[$__rate_interval]))',
                   "{{tier}} {{outcome}}")],
        ))
        .with_panel(bar_gauge(
            "VIP failures in range by outcome class",
            "Failed transactions of VIP clients over the selected time range per outcome class. "
            "Technical and terminal failures are the bank's fault; card and customer ones are "
            "the client's situation.",
            "short",
            [Query('sum by (outcome) '
                   '(increase(cardmon_vip_failures_total{tier=~"$tier"}[$__range]))',
                   "{{outcome}}", instant=True)],
        ))
        .with_row(Row("Alerts to relationship managers"))
        .with_panel(stat_panel(
            "Alerts sent in range",
            "Alert deliveries that succeeded over the selected time range, per delivery channel "
            "(cardmon_alerts_total{status=\"sent\"}).",
            "short",
            [Query('sum by (channel) (increase(cardmon_alerts_total{status="sent"}[$__range]))',
                   "{{channel}}", instant=True)],
            width=8,
        ))
        .with_panel(stat_panel(
            "Delivery retries and failures in range",
            "Alert delivery attempts that will be retried (retry) or were given up (failed) "
            "over the selected time range, per delivery channel and status.",
            "short",
            [Query('sum by (channel, status) '
                   '(increase(cardmon_alerts_total{status=~"retry|failed"}[$__range]))',
                   "{{channel}} {{status}}", instant=True)],
            width=8, warn=1,
        ))
        .with_panel(stat_panel(
            "Alerts pending in the outbox",
            "Alerts waiting for delivery in the SQLite outbox (cardmon_alerts_pending). A "
            "growing number means a delivery channel is down.",
            "short",
            [Query("sum(cardmon_alerts_pending)", "pending", instant=True)],
            width=8, warn=10, alarm=100,
        ))
        .with_panel(timeseries_panel(
            "Alert delivery attempts by channel and status",
            "Alert delivery attempts per second per delivery channel and status (sent, retry, "
            "failed): rate of cardmon_alerts_total.",
            "reqps",
            [Query("sum by (channel, status) (rate(cardmon_alerts_total[$__rate_interval]))",
                   "{{channel}} {{status}}")],
        ))
        .with_panel(timeseries_panel(
            "Undelivered share of attempts by channel",
            "Share of alert delivery attempts that did not deliver (retry or failed) over 5 "
            "minutes, per delivery channel (recording rule "
            "channel:cardmon_alerts_undelivered_per_attempts:ratio_rate5m).",
            "percentunit",
            [Query("channel:cardmon_alerts_undelivered_per_attempts:ratio_rate5m", "{{channel}}")],
            max_value=1,
        ))
        .with_panel(timeseries_panel(
            "Alert delivery time p50 / p95 / p99",
            "Seconds to deliver (or give up delivering) one alert attempt, per delivery channel "
            "(cardmon_alert_delivery_duration_seconds histogram).",
            "s",
            [Query(f"histogram_quantile({q}, sum by (channel, le) "
                   "(rate(cardmon_alert_delivery_duration_seconds_bucket[$__rate_interval])))",
                   f"{{{{channel}}}} q{q}") for q in QUANTILES],
            width=24,
        ))
        .with_row(Row("Acknowledgement and escalation"))
        .with_panel(stat_panel(
            "Alerts acknowledged in range",
            "Alerts a person acknowledged over the selected time range, per severity "
            "(increase of cardmon_alerts_acknowledged_total; API, signed link and CLI alike).",
            "short",
            [Query("sum by (severity) (increase(cardmon_alerts_acknowledged_total[$__range]))",
                   "{{severity}}", instant=True)],
            width=8,
        ))
        .with_panel(stat_panel(
            "Escalation steps in range",
            "Escalation steps taken for alerts nobody acknowledged in time, over the selected "
            "time range, per severity and step (1: the backup manager, 2: the team lead, as "
            "rules/alerting.yaml orders them).",
            "short",
            [Query("sum by (severity, step) (increase(cardmon_alerts_escalated_total[$__range]))",
                   "{{severity}} step {{step}}", instant=True)],
            width=8, warn=1,
        ))
        .with_panel(stat_panel(
            "Alerts nobody has acknowledged",
            "Alerts in the store that are open, notified or failed (not yet acknowledged nor "
            "resolved), per severity (cardmon_stored_alerts).",
            "short",
            [Query('sum by (severity) (cardmon_stored_alerts{state=~"open|notified|failed"})',
                   "{{severity}}", instant=True)],
            width=8, warn=1,
        ))
        .with_panel(timeseries_panel(
            "Time to acknowledge p50 / p95 / p99",
            "Seconds from when an alert was recorded to its acknowledgement, per severity "
            "(cardmon_alert_time_to_acknowledge_seconds histogram; escalation starts at 15 min).",
            "s",
            [Query(f"histogram_quantile({q}, sum by (severity, le) "
                   "(rate(cardmon_alert_time_to_acknowledge_seconds_bucket[$__rate_interval])))",
                   f"{{{{severity}}}} q{q}") for q in QUANTILES],
        ))
        .with_panel(timeseries_panel(
            "Acknowledgements, escalations and resolutions per second",
            "Alerts acknowledged (by channel: api, link, cli, workspace), escalation steps and resolutions "
            "per second.",
            "reqps",
            [Query("sum by (via) (rate(cardmon_alerts_acknowledged_total[$__rate_interval]))",
                   "acknowledged via {{via}}"),
             Query("sum(rate(cardmon_alerts_escalated_total[$__rate_interval]))", "escalated"),
             Query("sum(rate(cardmon_alerts_resolved_total[$__rate_interval]))", "resolved")],
        ))
        .with_panel(timeseries_panel(
            "Alerts by lifecycle state",
            "Alerts in the store per lifecycle state (open, notified, acknowledged, resolved, "
            "failed): cardmon_stored_alerts summed over severities.",
            "short",
            [Query("sum by (state) (cardmon_stored_alerts)", "{{state}}")],
            width=24,
        ))
        .with_row(Row("Storm control"))
        .with_panel(stat_panel(
            "Incidents opened in range",
            "Outages storm control found over the selected time range, per scope (network, "
            "issuer, region, merchant, terminal): each is one message per affected manager "
            "instead of one per failure (docs/incidents.md).",
            "short",
            [Query("sum by (scope) (increase(cardmon_incidents_opened_total[$__range]))",
                   "{{scope}}", instant=True)],
            width=8, warn=1,
        ))
        .with_panel(stat_panel(
            "Incidents open now",
            "Incidents that have not ended (their scope has not served clients without "
            "failing for resolve_after_seconds), per scope (cardmon_incidents_open).",
            "short",
            [Query("sum by (scope) (cardmon_incidents_open)", "{{scope}}", instant=True)],
            width=8, warn=1,
        ))
        .with_panel(stat_panel(
            "Messages saved in range",
            "Alert messages folded into incident notices and alerts held by the per-manager "
            "rate cap over the selected time range (cardmon_alerts_merged_total, "
            "cardmon_alerts_rate_capped_total).",
            "short",
            [Query("sum(increase(cardmon_alerts_merged_total[$__range]))", "folded into incidents",
                   instant=True),
             Query("sum(increase(cardmon_alerts_rate_capped_total[$__range]))", "held by the cap",
                   instant=True)],
            width=8,
        ))
        .with_panel(timeseries_panel(
            "Incident notices sent per second",
            "Incident notices the channels accepted, per kind: opened (the first message to a "
            "manager), update, resolved (all-clear), escalated (to the backup or team lead).",
            "reqps",
            [Query("sum by (kind) (rate(cardmon_incident_notices_sent_total[$__rate_interval]))",
                   "{{kind}}")],
            width=24,
        ))
        .with_row(Row("Recovery after a failure"))
        .with_panel(stat_panel(
            "VIP recovery ratio in range",
            "Of the recovery watches decided over the selected time range, the share where the "
            "client completed an approved transaction of the same kind within the watch window "
            "(30 min) after a failure alert, per channel (ATM, POS, ECOM): recovered / "
            "(recovered + abandoned) of cardmon_vip_recoveries_total.",
            "percentunit",
            [Query('(sum by (channel) (increase(cardmon_vip_recoveries_total{result="recovered"}'
                   '[$__range])) or sum by (channel) (increase(cardmon_vip_recoveries_total'
                   '[$__range])) * 0) / (sum by (channel) (increase(cardmon_vip_recoveries_total'
                   '[$__range])) > 0)', "{{channel}}", instant=True)],
            width=8, height=6,
        ))
        .with_panel(timeseries_panel(
            "VIP recovery ratio by channel (1 h)",
            "Share of recovery watches decided over the last hour that ended recovered, per "
            "channel (recording rule channel:cardmon_vip_recoveries_recovered_per_decided:"
            "ratio_rate1h). A drop means clients give up after a failure.",
            "percentunit",
            [Query("channel:cardmon_vip_recoveries_recovered_per_decided:ratio_rate1h",
                   "{{channel}}")],
            width=16, height=6, max_value=1,
        ))
        .with_panel(bar_gauge(
            "Recovered vs abandoned in range by outcome class",
            "Recovery watches decided over the selected time range, by result (recovered, "
            "abandoned) and the outcome class of the alert's first failure (technical, terminal, "
            "card, customer...): increase of cardmon_vip_recoveries_total.",
            "short",
            [Query("sum by (result, outcome) (increase(cardmon_vip_recoveries_total[$__range]))",
                   "{{result}} {{outcome}}", instant=True)],
        ))
        .with_panel(timeseries_panel(
            "Time to recover p50 / p95",
            "Seconds from a VIP failure to the client's approved transaction of the same kind "
            "(cardmon_vip_recovery_seconds histogram; recovered watches only).",
            "s",
            [Query(f"histogram_quantile({q}, sum by (le) "
                   "(rate(cardmon_vip_recovery_seconds_bucket[$__rate_interval])))",
                   f"q{q}") for q in ("0.5", "0.95")],
        ))
    )
