"""The alert policy (rules/alerting.yaml): which VIP failures alert, at which severity."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from monitor.paths import rules_path
from monitor.pipeline.selection import FAILURE_OUTCOMES, AlertPolicy, PolicyError

OUTCOMES = ("approved", *FAILURE_OUTCOMES)


@pytest.fixture(scope="module")
def policy() -> AlertPolicy:
    """The shipped alert policy."""
    return AlertPolicy.load(rules_path("alerting.yaml"))


def alerting(policy: AlertPolicy, tier: str | None) -> dict[str, str]:
    """``outcome → severity`` of the outcomes that alert for a client of ``tier``."""
    frame = pl.DataFrame(
        {"event_id": [f"e-{o}" for o in OUTCOMES], "tier": [tier] * len(OUTCOMES), "outcome": list(OUTCOMES)},
        schema={"event_id": pl.String, "tier": pl.String, "outcome": pl.String},
    )
    selected = policy.select(frame)
    assert selected.get_column("event_id").to_list() == [f"e-{o}" for o in selected.get_column("outcome")]
    return dict(selected.select("outcome", "severity").iter_rows())


def test_top_tier_alerts_on_every_failure_class(policy: AlertPolicy) -> None:
    """A private client alerts on every failure class: technical/terminal/fraud high, card medium, customer low."""
    assert policy.tiers[0] == "private"
    assert alerting(policy, "private") == {
        "technical": "high", "terminal": "high", "fraud": "high",
        "card": "medium", "customer": "low", "unknown": "medium",
    }


def test_platinum_does_not_alert_on_customer_failures(policy: AlertPolicy) -> None:
    """A platinum client alerts on everything but the client's own (customer) failures."""
    assert alerting(policy, "platinum") == {
        "technical": "high", "terminal": "high", "fraud": "high", "card": "medium", "unknown": "medium",
    }


def test_gold_alerts_only_on_bank_and_fraud_failures(policy: AlertPolicy) -> None:
    """A gold client alerts only on technical, terminal and fraud failures."""
    assert alerting(policy, "gold") == {"technical": "high", "terminal": "high", "fraud": "high"}


def test_unknown_tier_uses_the_default_tier(policy: AlertPolicy) -> None:
    """A client whose tier the policy does not list is treated like default_tier, keeping its own tier label."""
    assert alerting(policy, "silver") == {"technical": "high", "terminal": "high", "fraud": "high"}
    frame = pl.DataFrame({"tier": ["silver"], "outcome": ["technical"]})
    assert policy.select(frame).rows() == [("silver", "technical", "high")]


def test_approved_and_non_vip_never_alert(policy: AlertPolicy) -> None:
    """Approved transactions and clients outside the registry (null tier) never alert."""
    assert "approved" not in alerting(policy, "private")
    assert alerting(policy, None) == {}
    frame = pl.DataFrame({"tier": ["private", None, "gold"], "outcome": ["approved", "fraud", "customer"]},
                         schema={"tier": pl.String, "outcome": pl.String})
    selected = policy.select(frame)
    assert selected.height == 0
    assert "severity" in selected.columns


def test_select_keeps_batch_order_and_columns(policy: AlertPolicy) -> None:
    """select keeps the surviving rows in batch order with all their columns, plus severity."""
    frame = pl.DataFrame({
        "event_id": ["a", "b", "c", "d", "e"],
        "tier": ["gold", "private", None, "platinum", "private"],
        "outcome": ["card", "customer", "technical", "terminal", "approved"],
    })
    assert policy.select(frame).rows() == [("b", "private", "customer", "low"),
                                           ("d", "platinum", "terminal", "high")]


def test_the_selection_plan_gives_what_select_gives(policy: AlertPolicy) -> None:
    """The lazy selection (collected with other plans of the batch) has select's rows, columns and types, also when empty."""
    frame = pl.DataFrame({
        "event_id": ["a", "b", "c", "d", "e"],
        "tier": ["gold", "private", None, "platinum", "unlisted"],
        "outcome": ["card", "customer", "technical", "terminal", "fraud"],
    })
    for rows in (frame, frame.head(0), frame.filter(pl.col("outcome") == "card")):
        planned = policy.select_plan(rows.lazy()).collect()
        assert planned.equals(policy.select(rows))
        assert planned.schema == {**rows.schema, "severity": pl.String}


def test_window_and_actions_from_the_file(policy: AlertPolicy) -> None:
    """The grouping window is 600 s and every failure class has a one-line suggested action."""
    assert policy.grouping_window_seconds == 600
    for outcome in FAILURE_OUTCOMES:
        action = policy.action_for(outcome)
        assert action and "\n" not in action and "  " not in action
    assert policy.action_for("fraud").startswith("A fraud control stopped the transaction")
    assert policy.action_for("approved") == ""


def test_tier_severity_override(policy: AlertPolicy) -> None:
    """A tier's own severity mapping overrides default_severity for that tier only."""
    custom = AlertPolicy.from_mapping({
        "default_severity": {"card": "medium"},
        "tiers": {"private": {"alert_on": ["card"], "severity": {"card": "high"}},
                  "gold": {"alert_on": ["card"]}},
    })
    assert alerting(custom, "private") == {"card": "high"}
    assert alerting(custom, "gold") == {"card": "medium"}
    assert alerting(custom, "bronze") == {}  # no default_tier: unknown tiers never alert


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tiers: {gold: {alert_on: [technical, outage]}}", "tier 'gold' alerts on unknown outcome 'outage'"),
        ("tiers: {gold: {alert_on: [approved]}}", "unknown outcome 'approved'"),
        ("default_severity: {technical: critical}\ntiers: {gold: {alert_on: [technical]}}",
         "severity 'critical' for technical"),
        ("tiers: {gold: {alert_on: [card], severity: {card: urgent}}}", "severity 'urgent' for card"),
        ("tiers: {gold: {alert_on: [card], severity: {cards: high}}}", "unknown outcome 'cards'"),
        ("tiers: {}", "non-empty 'tiers'"),
        ("grouping_window_seconds: 600", "non-empty 'tiers'"),
        ("tiers: [gold, platinum]", "non-empty 'tiers'"),
        ("tiers: {gold: [technical]}", "tier 'gold' must be a mapping"),
        ("tiers: {gold: {alert_on: technical}}", "'alert_on' must be a list"),
        ("default_tier: {alert_on: [outage]}\ntiers: {gold: {alert_on: [technical]}}",
         "default_tier alerts on unknown outcome 'outage'"),
        ("grouping_window_seconds: 0\ntiers: {gold: {alert_on: [technical]}}", "grouping_window_seconds"),
        ("grouping_window_seconds: true\ntiers: {gold: {alert_on: [technical]}}", "grouping_window_seconds"),
        ("tiers: {gold: {alert_on: [technical]}", "cannot read alert policy"),
    ],
    ids=["unknown-outcome", "approved-outcome", "bad-default-severity", "bad-tier-severity",
         "severity-unknown-outcome", "empty-tiers", "no-tiers", "tiers-list", "tier-not-mapping",
         "alert-on-string", "bad-default-tier", "zero-window", "bool-window", "bad-yaml"],
)
def test_bad_policy_files_raise(tmp_path: Path, text: str, message: str) -> None:
    """A broken policy file raises PolicyError naming the file and the bad entry."""
    path = tmp_path / "alerting.yaml"
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        AlertPolicy.load(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_missing_policy_file_raises(tmp_path: Path) -> None:
    """A policy path that does not exist raises PolicyError naming it."""
    with pytest.raises(PolicyError, match="cannot read alert policy .*absent.yaml"):
        AlertPolicy.load(tmp_path / "absent.yaml")
