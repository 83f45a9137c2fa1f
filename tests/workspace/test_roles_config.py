"""Roles from configuration: the ``workspace`` keys, their checks, and who the workspace finds by ID or address."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from monitor.alerts.store import AlertStore
from monitor.config import WorkspaceSettings, isolated_settings, load_settings
from monitor.domain import Manager
from monitor.errors import ConfigurationError
from monitor.workspace import configured_workspace
from monitor.workspace.roles import People, RoleBook

SECRET = "workspace-secret-for-tests-0123"
CLAIRE = Manager(manager_id="RM-017", name="Claire Martin", email="claire.martin@bank.example")
LENA = Manager(manager_id="RM-001", name="Lena Hoffmann", email="shared@bank.example")
PRIYA = {"id": "OPS-7", "name": "Priya Nair", "email": "priya.nair@bank.example"}
REGISTRY = {m.manager_id: m for m in (CLAIRE, LENA)}


def test_teams_and_operations_are_read_from_the_yaml_file(tmp_path: Path) -> None:
    """The documented keys load from a config file: teams by lead, operations with their addresses, names off."""
    config = tmp_path / "cardmon.yaml"
    config.write_text(f"""
workspace:
  enabled: true
  secret: {SECRET}
  teams:
    RM-001: [RM-017, RM-042]
  operations:
    - {{id: OPS-7, name: Priya Nair, email: priya.nair@bank.example, locale: fr, timezone: Europe/Paris}}
""")
    section = load_settings(config).workspace
    assert section.teams == {"RM-001": ("RM-017", "RM-042")}
    assert [(p.id, p.name, p.email) for p in section.operations] == [("OPS-7", "Priya Nair",
                                                                      "priya.nair@bank.example")]
    assert section.operations_see_client_names is False
    priya = People(dict, RoleBook.from_settings(section)).get("OPS-7")
    assert priya is not None and (priya.locale, priya.timezone, priya.manager_id) == ("fr", "Europe/Paris", "OPS-7")


@pytest.mark.parametrize(("values", "message"), [
    ({"teams": {"RM-001": ["RM-017", "RM-017"]}}, "lists a manager twice"),
    ({"operations": [PRIYA, {**PRIYA, "email": "other@bank.example"}]}, "same id"),
    ({"operations": [PRIYA, {**PRIYA, "id": "OPS-8", "email": "PRIYA.NAIR@bank.example"}]}, "same email"),
    ({"teams": {"OPS-7": ["RM-017"]}, "operations": [PRIYA]}, "also a manager in workspace.teams"),
    ({"teams": {"RM-001": ["OPS-7"]}, "operations": [PRIYA]}, "also a manager in workspace.teams"),
    ({"operations": [{**PRIYA, "email": "not an address"}]}, "email"),
    ({"teams": {"RM-001": [""]}}, "teams"),
    ({"operations": [{**PRIYA, "timezone": "Mars/Olympus"}]}, "IANA zone"),
])
def test_ambiguous_or_malformed_roles_are_refused_at_start(values: dict[str, object], message: str) -> None:
    """A manager twice in a team, two operations people with one ID or address, or an ID in both roles is refused."""
    with pytest.raises(ValidationError, match=message):
        WorkspaceSettings(**values)  # type: ignore[arg-type]


def test_an_operations_id_that_is_a_registry_manager_stops_the_start(tmp_path: Path) -> None:
    """An operations ID the registry holds as a manager ID refuses to build the workspace (ConfigurationError)."""
    settings = isolated_settings(workspace={"enabled": True, "secret": SECRET,
                                            "operations": [{**PRIYA, "id": "RM-017"}]})
    with AlertStore(tmp_path / "alerts.db") as store, pytest.raises(ConfigurationError, match="RM-017"):
        configured_workspace(settings, store, managers=lambda: REGISTRY)


def test_team_members_the_registry_lacks_are_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A lead or team manager not in the registry (yet) is a warning at start, not a refusal."""
    settings = isolated_settings(workspace={"enabled": True, "secret": SECRET,
                                            "teams": {"RM-001": ["RM-017", "RM-404"], "RM-999": []}})
    with AlertStore(tmp_path / "alerts.db") as store, caplog.at_level(logging.WARNING, "monitor.workspace"):
        workspace = configured_workspace(settings, store, managers=lambda: REGISTRY)
    assert workspace is not None
    warned = [r.getMessage() for r in caplog.records]
    assert any("RM-404" in m for m in warned) and any("team lead RM-999" in m for m in warned)
    lena = workspace.mailer.people.get("RM-001")
    assert lena is not None and lena.roles == {"manager", "team_lead"} and lena.team == {"RM-017", "RM-404"}


def test_people_are_found_by_id_or_unambiguous_address() -> None:
    """Operations are found by ID or address; an address two people share, or an ID in both roles, finds nobody."""
    managers = dict(REGISTRY)
    people = People(lambda: managers, RoleBook(operations={"OPS-7": ("Priya Nair", "Priya.Nair@bank.example"),
                                                           "OPS-8": ("Sam Okafor", "shared@bank.example")},
                                               teams={"RM-001": frozenset({"RM-001", "RM-017"})}))
    priya = people.find(" priya.nair@BANK.example ")
    assert priya is not None and (priya.person_id, priya.roles) == ("OPS-7", {"operations"})
    assert people.find("shared@bank.example") is None  # Lena (registry) and Sam (operations)
    assert people.find("OPS-8") is not None
    lena = people.get("RM-001")
    assert lena is not None and lena.team == {"RM-017"}  # a lead's own ID is not their team
    claire = people.get("RM-017")
    assert claire is not None and claire.roles == {"manager"} and claire.team == frozenset()
    managers["OPS-7"] = Manager(manager_id="OPS-7", name="Someone")  # a registry reload brings a clash
    assert people.get("OPS-7") is None and people.find("priya.nair@bank.example") is None
    assert people.problems()[0] == ["workspace.operations id OPS-7 is also a manager ID of the VIP registry"]
