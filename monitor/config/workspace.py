"""Settings of the relationship managers' workspace: sign-in links, sessions and roles."""

from __future__ import annotations

from typing import Annotated, Final, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from monitor.config.endpoints import MIN_SECRET_CHARS
from monitor.config.section import SECTION_CONFIG
from monitor.i18n import check_locale

__all__ = ["OperationsPerson", "WorkspaceSettings"]

#: The longest person ID the settings accept (a manager ID of the registry, or an
#: operations person's ID); the sign-in form accepts 320 characters.
_MAX_ID_CHARS: Final = 128
_PersonId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=_MAX_ID_CHARS)]


class OperationsPerson(BaseModel):
    """A member of operations: not a relationship manager, signs in with a link mailed to ``email``.

    Operations see incidents and terminals, never alerts (alerts name clients).
    """

    model_config = SECTION_CONFIG
    #: Their sign-in ID; must not be a manager ID of the registry (checked at start).
    id: _PersonId
    name: str = Field(min_length=1, max_length=200)
    #: Where their sign-in link goes (the form also finds them by it, any case).
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)
    #: The language of their pages and sign-in mail (BCP 47: ``en``, ``fr``, ``zh-Hans``).
    locale: str = Field(default="en", min_length=2, max_length=35)
    #: Their IANA zone (``Europe/Paris``).
    timezone: str = Field(default="UTC", min_length=1, max_length=64)

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        return check_locale(value)  # LocaleError is a ValueError: pydantic names the field

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError("timezone must be an IANA zone name such as Europe/Paris") from error
        return value


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
    #: Team leads: ``{lead manager ID: [manager IDs of their team]}``. A lead is a manager
    #: of the registry; they see (and act on) their team's clients' alerts besides their own.
    teams: dict[_PersonId, tuple[_PersonId, ...]] = Field(default_factory=dict)
    #: Operations staff: incidents and terminals, no alerts.
    operations: tuple[OperationsPerson, ...] = ()
    #: Whether operations pages name the clients an incident hit (default: never).
    operations_see_client_names: bool = False
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

    @model_validator(mode="after")
    def _roles_are_unambiguous(self) -> Self:
        for lead, team in self.teams.items():
            if len(set(team)) != len(team):
                raise ValueError(f"workspace.teams.{lead} lists a manager twice")
        ids = [person.id for person in self.operations]
        if len(set(ids)) != len(ids):
            raise ValueError("workspace.operations has two people with the same id")
        emails = [person.email.casefold() for person in self.operations]
        if len(set(emails)) != len(emails):
            raise ValueError("workspace.operations has two people with the same email")
        managers = set(self.teams) | {m for team in self.teams.values() for m in team}
        if clash := sorted(managers & set(ids)):
            raise ValueError(f"workspace.operations id {clash[0]} is also a manager in workspace.teams")
        return self
