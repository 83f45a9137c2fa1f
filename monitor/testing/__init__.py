"""What tests of cardmon, and of a bank's own code around it, share (public, like ``structlog.testing``).

* ``broker``: the embedded Kafka-compatible broker (Tansu) on 127.0.0.1, and ``free_port``;
* ``smtp``: a real SMTP sink (aiosmtpd) that keeps what it accepts and can be stopped
  for an outage;
* ``browser``: the system's headless Chromium driven by Playwright (found, launched
  with a fresh profile, skipped where absent unless ``CARDMON_REQUIRE_BROWSER=1``), and
  tabs that record console and script errors;
* ``fixtures``: a pytest plugin (``pytest_plugins = ["monitor.testing.fixtures"]``)
  with the session broker, an SMTP sink, a clean environment, isolated settings of a
  monitor under test, ``wait_until``, and the browser (``chromium``, ``browser_tab``).
* ``samples``: made-up VIP failures and recovery watch rows for a store whose contents
  are known (the report's tests, the README's picture of the report).

``smtp``, ``browser`` and ``fixtures`` need cardmon's test extras (``pip install 'cardmon[test]'``).
Importing this package loads nothing; import the module you need.
"""
