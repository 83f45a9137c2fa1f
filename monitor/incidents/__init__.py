"""Storm control: outages of a terminal, merchant, region or issuer as one incident each.

See :mod:`monitor.incidents.detector` for how an incident is found and ended and
``docs/incidents.md`` for what managers receive.
"""

import lazy_loader

# Names resolve on first use, so importing one submodule does not load the others.

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "detector": [
            "IncidentDetector",
        ],
        "model": [
            "Incident",
            "IncidentChange",
        ],
        "rules": [
            "IncidentRules",
            "IncidentRulesError",
            "SCOPES",
            "Scope",
            "ScopeRule",
        ],
    },
)
