"""cardmon's one settings model (:class:`Settings`), one frozen section per concern.

Values come, highest priority first, from: keyword arguments, ``CARDMON_``
environment variables (nested with ``__``, e.g. ``CARDMON_KAFKA__BOOTSTRAP_SERVERS``),
a YAML file (``CARDMON_CONFIG`` or ``--config``, default ``cardmon.yaml`` when it
exists), then the defaults. The model is frozen: a running monitor never changes its
settings.

=================  =====================================================================
module             sections
=================  =====================================================================
``inputs``         ``kafka``, ``registry``, ``health``, ``event_time``: what is read
``alerting``       ``alerting`` (with ``smtp``, ``postgres``, ``scale_out``): the store, delivery
``endpoints``      ``api``, ``metrics``: what is served
``workspace``      ``workspace``: the managers' workspace (sign-in links, sessions, roles)
``settings``       :class:`Settings`, :func:`load_settings`, :func:`isolated_settings`
``section``        what every section shares (frozen, no unknown key, no input in errors)
=================  =====================================================================

Import the names from here (``from monitor.config import Settings``).
"""

from monitor.config.alerting import (
    AlertingSettings,
    FallbackTarget,
    PostgresSettings,
    ScaleOutSettings,
    SmtpSettings,
)
from monitor.config.endpoints import MIN_SECRET_CHARS, ApiSettings, MetricsSettings
from monitor.config.inputs import EventTimeSettings, HealthSettings, KafkaSettings, RegistrySettings
from monitor.config.settings import Settings, isolated_settings, load_settings
from monitor.config.workspace import OperationsPerson, WorkspaceSettings

__all__ = [
    "MIN_SECRET_CHARS",
    "AlertingSettings",
    "ApiSettings",
    "EventTimeSettings",
    "FallbackTarget",
    "HealthSettings",
    "KafkaSettings",
    "MetricsSettings",
    "OperationsPerson",
    "PostgresSettings",
    "RegistrySettings",
    "ScaleOutSettings",
    "Settings",
    "SmtpSettings",
    "WorkspaceSettings",
    "isolated_settings",
    "load_settings",
]
