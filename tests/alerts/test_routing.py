"""Per-severity channel preferences: parsing the registry column and choosing routes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.alerts.routing import (
    Route,
    apprise_target,
    channel_kind,
    channels_for,
    parse_channels,
)
from monitor.alerts.store import AlertStore
from monitor.domain import Manager, VipFailure
from monitor.pipeline.vips import RegistryError, read_registry

T0 = datetime(2024, 5, 6, 12, 1, 30, tzinfo=UTC)
TGRAM = "tgram://123456789:AAH-secret-bot-token/-100987654"
JSON_HOOK = "json://hooks.bank.example/rm/secret-path?a=1;b=2,c"
ALL = ("email", "webhook", "apprise")
MakeFailure = Callable[..., VipFailure]


def _manager(channels: str | None = None, **fields: str) -> Manager:
    prefs = parse_channels(channels)
    values = {"manager_id": "RM-9", "name": "Ines Duarte", "email": "ines@bank.example",
              "webhook_url": "https://hooks.bank.example/rm9?token=s3cret"} | fields
    return Manager(**values, channels=prefs.channels, apprise_urls=prefs.apprise_urls)


def test_compact_syntax_gives_route_keys_per_severity() -> None:
    """Each severity gets its own targets; Apprise URLs become indexed keys, shared across severities."""
    prefs = parse_channels(f"high=email,webhook,apprise:{TGRAM};medium=email, apprise:{JSON_HOOK};"
                           f" low= ; ")
    assert prefs.channels == {"high": ("email", "webhook", "apprise:0"),
                              "medium": ("email", "apprise:1"), "low": ()}
    assert prefs.apprise_urls == (TGRAM, JSON_HOOK)
    assert parse_channels(f"high=apprise:{TGRAM};medium=apprise:{TGRAM}").apprise_urls == (TGRAM,)


def test_star_sets_every_severity_without_its_own_rule() -> None:
    """``*=`` fills the severities not named; named ones keep their rule."""
    prefs = parse_channels("*=email;high=email,webhook")
    assert prefs.channels == {"low": ("email",), "medium": ("email",), "high": ("email", "webhook")}


@pytest.mark.parametrize(("text", "message"), [
    ("high", "has no '='"),
    ("urgent=email", "unknown severity 'urgent'"),
    ("high=email;high=webhook", "two rules"),
    ("high=sms", "unknown target 'sms'"),
    ("high=apprise:not-a-url-s3cret", "not a URL"),
])
def test_malformed_columns_are_refused_without_quoting_urls(text: str, message: str) -> None:
    """Every malformed column raises a ValueError that names the problem, never a URL or token."""
    with pytest.raises(ValueError, match=message) as caught:
        parse_channels(text)
    assert "s3cret" not in str(caught.value)


def test_preferences_repr_hides_urls() -> None:
    """The parsed preferences' repr and the manager's repr never show an Apprise URL."""
    prefs = parse_channels(f"high=apprise:{TGRAM}")
    manager = _manager(f"high=apprise:{TGRAM}")
    assert "secret" not in repr(prefs)
    assert "secret-bot-token" not in repr(manager)


def test_without_preferences_routing_is_todays() -> None:
    """A manager without the column gets e-mail and webhook at every severity, as before."""
    manager = _manager(None)
    for severity in ("low", "medium", "high"):
        assert channels_for(manager, severity, ALL) == [Route("email", "email"), Route("webhook", "webhook")]
    assert channels_for(_manager(None, webhook_url=""), "high", ALL) == [Route("email", "email")]


def test_routes_follow_severity_and_what_is_enabled() -> None:
    """High goes everywhere the manager asked; an unconfigured kind or an empty rule sends nothing."""
    manager = _manager(f"high=email,webhook,apprise:{TGRAM};medium=apprise:{TGRAM};low=")
    assert channels_for(manager, "high", ALL) == [
        Route("email", "email"), Route("webhook", "webhook"), Route("apprise:0", "apprise", 0)]
    assert channels_for(manager, "high", ("webhook", "apprise")) == [
        Route("webhook", "webhook"), Route("apprise:0", "apprise", 0)]
    assert channels_for(manager, "medium", ALL) == [Route("apprise:0", "apprise", 0)]
    assert channels_for(manager, "low", ALL) == []


def test_a_severity_without_a_rule_gets_the_default() -> None:
    """Only high is set: medium falls back to e-mail and webhook."""
    manager = _manager(f"high=apprise:{TGRAM}")
    assert [r.channel for r in channels_for(manager, "medium", ALL)] == ["email", "webhook"]


def test_route_keys_resolve_to_the_managers_url_and_metrics_see_the_kind() -> None:
    """``apprise:1`` resolves to the second URL; its kind is ``apprise``; a missing index raises without a URL."""
    manager = _manager(f"high=apprise:{TGRAM},apprise:{JSON_HOOK}")
    assert apprise_target(manager, "apprise:1") == JSON_HOOK
    assert channel_kind("apprise:1") == "apprise"
    assert channel_kind("email") == "email"
    with pytest.raises(LookupError, match="no Apprise URL #5") as caught:
        apprise_target(manager, "apprise:5")
    assert "secret" not in str(caught.value)


def test_store_enqueues_one_row_per_route_of_the_alerts_severity(
    tmp_path: Path, make_failure: MakeFailure
) -> None:
    """A high alert gets the high routes plus sinks; a low alert of a manager with ``low=`` only the sinks."""
    manager = _manager(f"high=email,apprise:{TGRAM};low=")
    with AlertStore(tmp_path / "alerts.db") as store:
        store.record([make_failure("ev-1", T0, manager=manager, severity="high"),
                      make_failure("ev-2", T0, manager=manager, severity="low", customer_id="C-2")],
                     sinks=("jsonl",), channels=ALL)
        by_customer = {a.customer_id: sorted(d.channel for d in a.deliveries)
                       for a in store.list_alerts()}
    assert by_customer == {"C-1001": ["apprise:0", "email", "jsonl"], "C-2": ["jsonl"]}
    assert TGRAM not in (tmp_path / "alerts.db").read_bytes().decode("latin-1")


def _registry(tmp_path: Path, channels: str) -> tuple[Path, Path]:
    customers = tmp_path / "customers.csv"
    managers = tmp_path / "managers.csv"
    customers.write_text("customer_id,name,tier,manager_id\nC-1,Ada Lovelace,private,RM-1\n")
    managers.write_text('manager_id,name,email,webhook_url,channels\n'
                        f'RM-1,Claire Martin,claire@bank.example,,"{channels}"\n')
    return customers, managers


def test_registry_reads_the_channels_column(tmp_path: Path) -> None:
    """The managers file's ``channels`` column becomes the manager's preferences and URL list."""
    registry = read_registry(*_registry(tmp_path, f"high=email,apprise:{TGRAM};low=email"))
    manager = registry.managers["RM-1"]
    assert manager.channels == {"high": ("email", "apprise:0"), "low": ("email",)}
    assert manager.apprise_urls == (TGRAM,)


@pytest.mark.parametrize(("channels", "message"), [
    ("high=webhook", "channels names webhook but the manager has no webhook_url"),
    ("high=apprise:nosuchservice://s3cret@x", "Apprise URL #0 in channels is not a URL Apprise"),
    ("high=email;high=email", "two rules"),
])
def test_registry_refuses_unusable_channels_without_quoting_them(
    tmp_path: Path, channels: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A channel the manager cannot receive, or a URL Apprise does not know, fails the load; no token is shown."""
    with caplog.at_level(logging.DEBUG), pytest.raises(RegistryError, match=message) as caught:
        read_registry(*_registry(tmp_path, channels))
    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in caplog.text
