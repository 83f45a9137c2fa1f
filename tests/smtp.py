"""The SMTP relay of the outage tests is :class:`monitor.testing.smtp.SmtpSink`.

Kept under its old name only for tests/alerts/test_outages.py (the alerts slice edits
that file); import ``SmtpSink`` from :mod:`monitor.testing.smtp` instead.
"""

from monitor.testing.smtp import SmtpSink as SmtpRelay

__all__ = ["SmtpRelay"]
