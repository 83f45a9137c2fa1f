"""Settings of the relationship managers' workspace: sign-in links and sessions."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field, SecretStr, model_validator

from monitor.config.endpoints import MIN_SECRET_CHARS
from monitor.config.section import SECTION_CONFIG

__all__ = ["WorkspaceSettings"]


class WorkspaceSettings(BaseModel):
    """The managers' workspace, served under ``/workspace`` by the alert API.

    A manager signs in with a link sent through their own channel (signed with
    ``secret``, valid ``sign_in_max_age_seconds``, usable once); the link opens a
    session that lasts ``session_max_age_seconds`` unless it is revoked.
    """

    model_config = SECTION_CONFIG
    enabled: bool = False
    #: Signs sign-in links and session CSRF tokens (16+ characters; `openssl rand -hex 32`).
    #: Another secret than ``api.link_secret``: rotating one does not sign everybody out.
    secret: SecretStr | None = Field(default=None, min_length=MIN_SECRET_CHARS)
    #: How long a sign-in link works after it was sent (seconds; default 15 minutes).
    sign_in_max_age_seconds: int = Field(default=900, gt=0, le=86_400)
    #: How long a session lasts after sign-in (seconds; default 12 hours).
    session_max_age_seconds: int = Field(default=43_200, gt=0, le=30 * 86_400)
    #: How often used sign-in links and sessions past their expiry are deleted from the
    #: alert store (seconds; default hourly: an expired row is refused anyway, this only
    #: keeps the tables small).
    purge_interval_seconds: int = Field(default=3600, ge=60, le=86_400)

    @model_validator(mode="after")
    def _enabled_needs_a_secret(self) -> Self:
        if self.enabled and self.secret is None:
            raise ValueError("workspace.enabled needs workspace.secret (16+ characters; "
                             "make one with `openssl rand -hex 32`)")
        return self
