"""Settings of what the monitor serves: the alert HTTP API (with acknowledgement links) and ``/metrics``."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator

from monitor.config.section import SECTION_CONFIG

__all__ = ["MIN_SECRET_CHARS", "ApiSettings", "MetricsSettings"]

#: Fewest characters of an API token or link secret: 16 random characters resist guessing.
MIN_SECRET_CHARS = 16


class ApiSettings(BaseModel):
    """The alert HTTP API and the acknowledgement links in notifications.

    The JSON API needs ``token`` (bearer); acknowledgement links need ``link_secret``
    (signed, expiring tokens bound to the alert and the manager).
    """

    model_config = SECTION_CONFIG
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8465, ge=0, le=65535)
    #: Base URL managers reach the API at (used in links); ``None``: ``http://{host}:{port}``.
    public_url: str | None = None
    #: Bearer token of JSON callers (16+ characters); ``None``: the JSON API answers 403.
    token: SecretStr | None = None
    #: Signing secret of acknowledgement links (16+ characters); ``None``: no links.
    link_secret: SecretStr | None = Field(default=None, min_length=MIN_SECRET_CHARS)
    link_max_age_seconds: int = Field(default=172_800, gt=0)

    @field_validator("token")
    @classmethod
    def _token_is_long_enough(cls, token: SecretStr | None) -> SecretStr | None:
        # The message says how to make one and never quotes the value.
        if token is not None and len(token.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters "
                             "(make one with `openssl rand -hex 32`)")
        return token


class MetricsSettings(BaseModel):
    """Where ``/metrics`` is served."""

    model_config = SECTION_CONFIG
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)
    #: How often the gauges read from the alert store (outbox backlog, failed
    #: deliveries, alerts by state, incidents) are refreshed (seconds).
    store_gauges_interval_seconds: float = Field(default=5.0, gt=0)
    #: How often the repair-priority ranking (terminals by VIP impact over 24 h and 7 days)
    #: is re-read from the alert store (seconds; a week of VIP failures: once a minute).
    terminal_impact_interval_seconds: float = Field(default=60.0, ge=5)
