"""monitor.testing: isolated settings of a monitor under test, the wait helper and the SMTP sink."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from monitor.testing.fixtures import kafka_settings, monitor_settings, wait_until
from monitor.testing.smtp import SmtpSink


def test_monitor_settings_give_each_monitor_its_own_topics_group_store_and_ports(tmp_path: Path) -> None:
    """Two monitors named differently share no topic, group, store or port; the VIP registry is wired in."""
    registry = (tmp_path / "customers.csv", tmp_path / "managers.csv")
    first = monitor_settings(tmp_path / "a", "127.0.0.1:9", "one", vip_registry=registry)
    second = monitor_settings(tmp_path / "b", "127.0.0.1:9", "two")
    assert first.kafka.bootstrap_servers == "127.0.0.1:9"
    assert (first.kafka.topic, first.kafka.dead_letter_topic, first.kafka.group_id) == (
        "tx.one", "tx.one.dlq", "monitor-one")
    assert (first.health.status_topic, first.health.status_dead_letter_topic) == ("st.one", "st.one.dlq")
    assert first.alerting.store_path == tmp_path / "a" / "alerts.db"
    assert (first.registry.customers_path, first.registry.managers_path) == registry
    assert first.metrics.host == "127.0.0.1"
    ports = {first.api.port, first.metrics.port, second.api.port, second.metrics.port}
    assert len(ports) == 4 and 0 not in ports
    assert second.kafka.topic == "tx.two" and second.alerting.store_path == tmp_path / "b" / "alerts.db"


def test_monitor_settings_overrides_replace_one_key_and_keep_the_others(tmp_path: Path) -> None:
    """A section given replaces only the keys it names; the other defaults of that section stay."""
    settings = monitor_settings(tmp_path, "127.0.0.1:9", "x", kafka={"batch_timeout_ms": 100},
                                alerting={"sinks": ["jsonl"], "jsonl_path": tmp_path / "a.jsonl"},
                                api={"enabled": False})
    assert settings.kafka.batch_timeout_ms == 100 and settings.kafka.topic == "tx.x"
    assert settings.alerting.sinks == ("jsonl",)
    assert settings.alerting.poll_interval_seconds == 0.05
    assert settings.alerting.store_path == tmp_path / "alerts.db"
    assert settings.api.enabled is False and settings.api.port != 0


def test_kafka_settings_name_the_topics_and_group_and_take_overrides() -> None:
    """The kafka section alone has the same unique topics and group as a whole monitor's, and any field can be replaced."""
    kafka = kafka_settings("127.0.0.1:9", "k", batch_timeout_ms=100, session_timeout_ms=6000)
    assert (kafka.topic, kafka.dead_letter_topic, kafka.group_id) == ("tx.k", "tx.k.dlq", "monitor-k")
    assert (kafka.batch_timeout_ms, kafka.session_timeout_ms) == (100, 6000)
    assert kafka == monitor_settings(Path("."), "127.0.0.1:9", "k", kafka={
        "batch_timeout_ms": 100, "session_timeout_ms": 6000}).kafka


def test_monitor_settings_ignore_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CARDMON_ variable of the machine running the tests does not reach the monitor under test."""
    monkeypatch.setenv("CARDMON_KAFKA__TOPIC", "production.topic")
    assert monitor_settings(tmp_path, "127.0.0.1:9", "env").kafka.topic == "tx.env"


async def test_wait_until_returns_once_true_and_fails_naming_what_it_waited_for() -> None:
    """wait_until returns as soon as the condition holds, and fails the test with its reason after the timeout."""
    flag: list[bool] = []
    asyncio.get_running_loop().call_later(0.1, flag.append, True)
    await wait_until(lambda: bool(flag), timeout=5, what="the flag")
    with pytest.raises(AssertionError, match="timed out after 0.2 s waiting for the impossible"):
        await wait_until(lambda: False, timeout=0.2, what="the impossible")


@pytest.mark.integration
async def test_smtp_sink_keeps_each_message_and_refuses_connections_while_stopped() -> None:
    """The sink keeps what it accepts per recipient; stopped, its port refuses connections; started again, it accepts on the same port."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "cardmon@bank.test", "rm@bank.test", "Hello"
    message["Message-ID"] = "<one@bank.test>"
    message.set_content("Body text")
    with SmtpSink() as sink:
        await aiosmtplib.send(message, hostname=sink.host, port=sink.port, timeout=10)
        assert [(to, subject, body.strip()) for to, subject, body in sink.deliveries()] == [
            ("rm@bank.test", "Hello", "Body text")]
        sink.stop()
        assert not sink.running
        with pytest.raises(aiosmtplib.SMTPConnectError):
            await aiosmtplib.send(message, hostname=sink.host, port=sink.port, timeout=10)
        port = sink.port
        sink.start()
        assert sink.port == port
        await aiosmtplib.send(message, hostname=sink.host, port=sink.port, timeout=10)
    assert sink.message_ids() == {"<one@bank.test>": 2}
    assert not sink.running


async def test_smtp_sink_fixture_is_listening(smtp_sink: SmtpSink) -> None:
    """The ``smtp_sink`` fixture gives a started sink on 127.0.0.1 with nothing received yet."""
    assert smtp_sink.running and smtp_sink.host == "127.0.0.1"
    assert smtp_sink.messages() == [] and smtp_sink.deliveries() == []
