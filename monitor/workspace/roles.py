"""Who may sign in to the workspace, and in which roles: managers of the registry, team leads, operations.

Roles come from configuration (``workspace.teams``, ``workspace.operations``) and the VIP
registry as it is now:

- ``manager``: a manager of the registry (their own clients' alerts);
- ``team_lead``: a manager who leads a team in ``workspace.teams`` (their team's
  managers' clients' alerts too, and the team page);
- ``operations``: a person of ``workspace.operations``, not a manager (incidents and
  terminals; no alerts, which name clients).

:class:`People` answers "who is this ID or address" for the sign-in and every request.
What each role may see is decided in :mod:`monitor.workspace.access`, not here.

An operations ID that the registry also holds as a manager ID is ambiguous: at start
it is refused (:meth:`People.problems`); if a registry reload brings one later, nobody
signs in with that ID (logged) until the clash is gone. An address two people share is
ambiguous the same way: the form finds nobody by it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from monitor.config import WorkspaceSettings
from monitor.domain import Manager

__all__ = ["MAX_WHO_CHARS", "ROLES", "People", "Person", "Role", "RoleBook"]

log = logging.getLogger("monitor.workspace")

Role = Literal["manager", "team_lead", "operations"]
ROLES: Final[tuple[Role, ...]] = ("manager", "team_lead", "operations")
#: The longest manager ID or address the sign-in form accepts (characters).
MAX_WHO_CHARS: Final = 320


@dataclass(frozen=True, slots=True, kw_only=True)
class Person:
    """Someone who may sign in.

    Attributes:
        person_id: a manager ID of the registry, or an operations person's ID.
        name: their name (the registry's, or the settings').
        email: where their sign-in link goes; ``None``: they cannot get one.
        roles: their roles (:data:`ROLES`), never empty.
        team: for a team lead, the manager IDs of their team (their own not included);
            empty otherwise.
        locale: the language of their pages and mails (BCP 47: the registry's, or the settings').
        timezone: their IANA zone (the registry's, or the settings').
        chat_urls: their own chat targets (a manager's Apprise URLs from the registry), where
            a sign-in link goes when they have no e-mail address; they carry tokens, so they
            are left out of ``repr``.
    """

    person_id: str
    name: str
    email: str | None
    roles: frozenset[Role]
    team: frozenset[str] = frozenset()
    locale: str = "en"
    timezone: str = "UTC"
    chat_urls: tuple[str, ...] = field(default=(), repr=False)

    @property
    def manager_id(self) -> str:
        """The person's ID under the name the store's columns and sessions give it."""
        return self.person_id


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleBook:
    """The roles the settings give.

    Attributes:
        teams: lead manager ID → the manager IDs of their team (the lead's own, if listed, is ignored).
        operations: operations person ID → ``(name, email)``.
        operations_places: operations person ID → ``(locale, timezone)``; absent: English, UTC.
        operations_see_client_names: whether operations pages name clients.
    """

    teams: Mapping[str, frozenset[str]] = field(default_factory=dict)
    operations: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    operations_see_client_names: bool = False
    operations_places: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, section: WorkspaceSettings) -> RoleBook:
        """The roles of the ``workspace`` settings section."""
        return cls(teams={lead: frozenset(team) for lead, team in section.teams.items()},
                   operations={p.id: (p.name, p.email) for p in section.operations},
                   operations_see_client_names=section.operations_see_client_names,
                   operations_places={p.id: (p.locale, p.timezone) for p in section.operations})


class People:
    """Managers of the registry as it is now, and operations staff of the settings.

    Args:
        managers: returns the registry's managers by ID as they are now.
        roles: the roles of the settings; ``None``: managers only, nobody leads a team.
    """

    def __init__(self, managers: Callable[[], Mapping[str, Manager]], roles: RoleBook | None = None) -> None:
        self._managers = managers
        self.roles = roles or RoleBook()

    def __repr__(self) -> str:
        return f"People(teams={len(self.roles.teams)}, operations={len(self.roles.operations)})"

    def get(self, person_id: str) -> Person | None:
        """The person with this exact ID, or ``None`` (unknown, or an ambiguous ID)."""
        manager = self._managers().get(person_id)
        staff = self.roles.operations.get(person_id)
        if manager is not None and staff is not None:
            log.error("workspace: %s is both a manager of the registry and an operations ID; "
                      "nobody signs in with it until one is renamed", person_id)
            return None
        if staff is not None:
            name, email = staff
            locale, timezone = self.roles.operations_places.get(person_id, ("en", "UTC"))
            return Person(person_id=person_id, name=name, email=email, roles=frozenset({"operations"}),
                          locale=locale, timezone=timezone)
        if manager is None:
            return None
        team = self.roles.teams.get(person_id)
        return Person(person_id=person_id, name=manager.name, email=manager.email,
                      roles=frozenset({"manager"} if team is None else {"manager", "team_lead"}),
                      team=frozenset() if team is None else team - {person_id},
                      locale=getattr(manager, "locale", "en"), timezone=manager.timezone,
                      chat_urls=manager.apprise_urls)

    def find(self, who: str) -> Person | None:
        """The person whose ID is ``who``, or whose e-mail address is ``who`` (any case); else ``None``.

        An address that two people share finds nobody.
        """
        who = who.strip()
        if not who or len(who) > MAX_WHO_CHARS:
            return None
        found = self.get(who)
        if found is not None:
            return found
        wanted = who.casefold()
        ids = [m.manager_id for m in self._managers().values() if m.email and m.email.casefold() == wanted]
        ids += [pid for pid, (_, email) in self.roles.operations.items() if email.casefold() == wanted]
        if len(ids) != 1:
            if ids:
                log.warning("workspace sign-in asked for an address %d people share", len(ids))
            return None
        return self.get(ids[0])

    def name_of(self, manager_id: str) -> str | None:
        """A manager's name in the registry as it is now, ``None`` if not there."""
        manager = self._managers().get(manager_id)
        return None if manager is None else manager.name

    def problems(self) -> tuple[list[str], list[str]]:
        """What the roles of the settings get wrong against the registry as it is now.

        Returns:
            ``(errors, warnings)``: errors make the configuration unusable (an operations
            ID that is a manager ID of the registry); warnings name team leads and team
            managers the registry does not hold (yet: a registry reload may bring them).
        """
        managers = self._managers()
        errors = [f"workspace.operations id {pid} is also a manager ID of the VIP registry"
                  for pid in sorted(self.roles.operations) if pid in managers]
        warnings = [f"workspace.teams: team lead {lead} is not a manager of the VIP registry"
                    for lead in sorted(self.roles.teams) if lead not in managers]
        warnings += [f"workspace.teams.{lead}: manager {m} is not in the VIP registry"
                     for lead, team in sorted(self.roles.teams.items()) for m in sorted(team)
                     if m not in managers]
        return errors, warnings
