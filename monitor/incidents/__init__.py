"""Storm control: outages of a terminal, merchant, region or issuer as one incident each.

See :mod:`monitor.incidents.detector` for how an incident is found and ended and
``docs/incidents.md`` for what managers receive.
"""

from monitor.incidents.detector import IncidentDetector
from monitor.incidents.model import (
    Incident,
    IncidentChange,
    incident_id_for,
    is_notice_id,
    notice_id_for,
)
from monitor.incidents.rules import SCOPES, IncidentRules, IncidentRulesError, Scope, ScopeRule

__all__ = [
    "SCOPES",
    "Incident",
    "IncidentChange",
    "IncidentDetector",
    "IncidentRules",
    "IncidentRulesError",
    "Scope",
    "ScopeRule",
    "incident_id_for",
    "is_notice_id",
    "notice_id_for",
]
