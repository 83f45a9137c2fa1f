"""cardmon's one settings model, and where its values come from.

Values come, highest priority first, from: keyword arguments, ``CARDMON_``
environment variables (nested with ``__``, e.g. ``CARDMON_KAFKA__BOOTSTRAP_SERVERS``),
a YAML file (``CARDMON_CONFIG`` or ``--config``, default ``cardmon.yaml`` when it
exists), then the defaults of each section. The model is frozen: a running monitor
never changes its settings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from monitor.config.alerting import AlertingSettings
from monitor.config.endpoints import ApiSettings, MetricsSettings
from monitor.config.inputs import EventTimeSettings, HealthSettings, KafkaSettings, RegistrySettings
from monitor.config.workspace import WorkspaceSettings

__all__ = ["Settings", "isolated_settings", "load_settings"]


class Settings(BaseSettings):
    """All of cardmon's settings (frozen)."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,
        env_prefix="CARDMON_",
        env_nested_delimiter="__",
    )
    kafka: KafkaSettings = KafkaSettings()
    registry: RegistrySettings = RegistrySettings()
    alerting: AlertingSettings = AlertingSettings()
    health: HealthSettings = HealthSettings()
    event_time: EventTimeSettings = EventTimeSettings()
    api: ApiSettings = ApiSettings()
    metrics: MetricsSettings = MetricsSettings()
    workspace: WorkspaceSettings = WorkspaceSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = os.environ.get("CARDMON_CONFIG", "cardmon.yaml")
        return (
            init_settings,
            env_settings,
            YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file),
            file_secret_settings,
        )


def load_settings(config_path: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from a YAML file, the environment and ``overrides``.

    Args:
        config_path: YAML file; ``None`` uses ``CARDMON_CONFIG`` or ``./cardmon.yaml`` if present.
        overrides: top-level sections (``kafka=...``) that win over everything else.

    Raises:
        FileNotFoundError: ``config_path`` (or ``CARDMON_CONFIG``) names a file that does
            not exist; only the implicit ``./cardmon.yaml`` may be absent.
        pydantic.ValidationError: a value is invalid (the message names it).
    """
    if config_path is None and os.environ.get("CARDMON_CONFIG"):
        # An operator who points at a file means it: a typo must not silently run on defaults.
        config_path = Path(os.environ["CARDMON_CONFIG"])
    if config_path is not None:
        if not config_path.is_file():
            raise FileNotFoundError(f"config file not found: {config_path}")
        previous = os.environ.get("CARDMON_CONFIG")
        os.environ["CARDMON_CONFIG"] = str(config_path)
        try:
            return Settings(**overrides)
        finally:
            if previous is None:
                del os.environ["CARDMON_CONFIG"]
            else:
                os.environ["CARDMON_CONFIG"] = previous
    return Settings(**overrides)


class _IsolatedSettings(Settings):
    """Settings that read only their keyword arguments (no environment, no YAML file)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def isolated_settings(**values: Any) -> Settings:
    """Settings from ``values`` and the defaults only, ignoring ``CARDMON_*`` and any YAML file.

    For self-contained runs (``cardmon demo``, the benchmark): an operator's
    environment must not send demo alerts through the bank's real mail relay.
    """
    return _IsolatedSettings(**values)
