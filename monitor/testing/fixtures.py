"""What tests of cardmon, and of a bank's own code around it, share: a pytest plugin.

Register it in the top ``conftest.py`` of a test suite::

    pytest_plugins = ["monitor.testing.fixtures"]

It needs cardmon's test extras (``pip install 'cardmon[test]'``: pytest, pytest-asyncio,
aiosmtpd, playwright), which a production install does not have.

Fixtures (real parts, no mocks):

* ``kafka_bootstrap`` (session): bootstrap servers of a running Kafka-compatible
  broker: the embedded one (:class:`monitor.testing.broker.EmbeddedBroker`), or an
  existing Kafka named by the ``KAFKA_BOOTSTRAP_SERVERS`` environment variable;
* ``unique_name``: a short unique suffix for topics, groups and schemas;
* ``smtp_sink``: a started :class:`monitor.testing.smtp.SmtpSink` (aiosmtpd), stopped
  after the test;
* ``clean_environment``: no ``CARDMON_*`` variable or ``./cardmon.yaml`` leaks into
  :class:`monitor.config.Settings` (use with ``pytest.mark.usefixtures``);
* ``chromium``: a started headless Chromium (the system's, driven by Playwright;
  :mod:`monitor.testing.browser`), skipped where there is none unless
  ``CARDMON_REQUIRE_BROWSER=1``; ``browser_tab``: a page of it in a fresh context,
  with the console errors it logged. Tests using them are marked ``browser``.

Plain functions:

* :func:`monitor_settings`: isolated settings for one monitor under test (its own
  topics, consumer group, alert store and free ports), section by section overridable;
* :func:`kafka_settings`: the ``kafka`` section alone, for a consumer under test;
* :func:`wait_until`: poll a condition until it holds, or fail after a timeout.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser

from monitor.config import KafkaSettings, Settings, isolated_settings
from monitor.testing.broker import EmbeddedBroker, free_port
from monitor.testing.browser import BrowserTab, chromium_or_skip, launch_chromium, open_tab
from monitor.testing.smtp import SmtpSink

__all__ = [
    "browser_tab",
    "chromium",
    "clean_environment",
    "kafka_bootstrap",
    "kafka_settings",
    "monitor_settings",
    "smtp_sink",
    "unique_name",
    "wait_until",
]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a running Kafka-compatible broker."""
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers


@pytest.fixture
def unique_name() -> str:
    """A short unique suffix for topics and consumer groups, so tests never share state."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 and a free port that keeps what it accepts."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CARDMON_ variable or ./cardmon.yaml leaks into Settings(): use with ``usefixtures``."""
    for name in list(os.environ):
        if name.startswith("CARDMON_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


_BROWSER_FIXTURES = frozenset({"chromium", "browser_tab"})


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``browser`` marker (``-m "not browser"`` leaves the browser tests out)."""
    config.addinivalue_line("markers", "browser: drives a real headless Chromium (monitor.testing.browser)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the browser fixtures ``browser``."""
    for item in items:
        if _BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium of this machine, new for the test; skipped where absent, required in CI."""
    async with launch_chromium(chromium_or_skip()) as browser:
        yield browser


@pytest.fixture
async def browser_tab(chromium: Browser) -> AsyncIterator[BrowserTab]:
    """A page of ``chromium`` in a fresh context (no cookies), with the console errors it logs."""
    async with open_tab(chromium) as tab:
        yield tab


def _kafka_defaults(bootstrap_servers: str, name: str) -> dict[str, Any]:
    return {"bootstrap_servers": bootstrap_servers, "topic": f"tx.{name}", "dead_letter_topic": f"tx.{name}.dlq",
            "group_id": f"monitor-{name}", "batch_timeout_ms": 50}


def kafka_settings(bootstrap_servers: str, name: str, **values: Any) -> KafkaSettings:
    """The ``kafka`` settings of one consumer under test: topic ``tx.{name}``, dead letters
    ``tx.{name}.dlq``, consumer group ``monitor-{name}``, ``batch_timeout_ms`` 50.

    Args:
        bootstrap_servers: the broker (the ``kafka_bootstrap`` fixture).
        name: what makes the topics and group unique (the ``unique_name`` fixture).
        **values: other fields of :class:`monitor.config.KafkaSettings`, or replacements.

    Raises:
        pydantic.ValidationError: a value breaks the settings model.
    """
    return KafkaSettings(**{**_kafka_defaults(bootstrap_servers, name), **values})


def monitor_settings(workdir: Path, bootstrap_servers: str, name: str, *,
                     vip_registry: tuple[Path, Path] | None = None,
                     **sections: Mapping[str, Any]) -> Settings:
    """Settings of one monitor under test, isolated from the environment and from other tests.

    Built with :func:`monitor.config.isolated_settings` (no ``CARDMON_*`` variable or YAML
    file is read). Each section starts from these values, and the keys given in
    ``sections`` replace or add to them one by one:

    * ``kafka``: as :func:`kafka_settings`;
    * ``registry``: ``customers_path`` and ``managers_path`` from ``vip_registry`` (if given);
    * ``alerting``: the SQLite store ``{workdir}/alerts.db`` (unless ``store_url`` is
      given), ``poll_interval_seconds`` 0.05;
    * ``health``: status topic ``st.{name}``, its dead letters ``st.{name}.dlq``;
    * ``api``: a free port on 127.0.0.1;
    * ``metrics``: a free port on 127.0.0.1.

    Other sections (``storm``...) are passed as given.

    Args:
        workdir: folder of the alert store (usually ``tmp_path``).
        bootstrap_servers: the broker (the ``kafka_bootstrap`` fixture).
        name: what makes the topics and group unique (the ``unique_name`` fixture).
        vip_registry: ``(customers.csv, managers.csv)`` of the VIP registry.
        **sections: overrides, section name to ``{key: value}``.

    Returns:
        The frozen :class:`monitor.config.Settings`.

    Raises:
        pydantic.ValidationError: a value breaks the settings model.
    """
    alerting: dict[str, Any] = {"poll_interval_seconds": 0.05}
    if "store_url" not in sections.get("alerting", {}):
        alerting["store_path"] = workdir / "alerts.db"
    defaults: dict[str, dict[str, Any]] = {
        "kafka": _kafka_defaults(bootstrap_servers, name),
        "registry": ({"customers_path": vip_registry[0], "managers_path": vip_registry[1]}
                     if vip_registry is not None else {}),
        "alerting": alerting,
        "health": {"status_topic": f"st.{name}", "status_dead_letter_topic": f"st.{name}.dlq"},
        "api": {"port": free_port()},
        "metrics": {"host": "127.0.0.1", "port": free_port()},
    }
    values: dict[str, dict[str, Any]] = {
        section: {**defaults.get(section, {}), **sections.get(section, {})}
        for section in {*defaults, *sections}
    }
    return isolated_settings(**{section: value for section, value in values.items() if value})


async def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``condition`` every 50 ms until it is true.

    Args:
        condition: called on the event loop; must not block.
        timeout: seconds before giving up.
        what: named in the failure message.

    Raises:
        AssertionError: ``condition`` was still false after ``timeout`` seconds (fails the test).
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)
