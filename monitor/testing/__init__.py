"""What tests of cardmon, and of a bank's own code around it, share (public, like ``structlog.testing``).

* ``broker``: the embedded Kafka-compatible broker (Tansu) on 127.0.0.1, and ``free_port``;
* ``smtp``: a real SMTP sink (aiosmtpd) that keeps what it accepts and can be stopped
  for an outage;
* ``fixtures``: a pytest plugin (``pytest_plugins = ["monitor.testing.fixtures"]``)
  with the session broker, an SMTP sink, a clean environment, isolated settings of a
  monitor under test and ``wait_until``.

``smtp`` and ``fixtures`` need cardmon's test extras (``pip install 'cardmon[test]'``).
Importing this package loads nothing; import the module you need.
"""
