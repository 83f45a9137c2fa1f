"""Device status events for the synthetic fleet (topic ``card.terminal-status``).

Scenarios are small frozen values, by offset in seconds from the start of the
traffic, like the transaction faults of :mod:`simulators.faults`:

* :class:`CassetteDepletion`: an ATM cassette goes ``low``, then ``empty``, and is
  optionally replenished (``ok``) — XFS ``WFS_CDM_STATCULOW``/``STATCUEMPTY``;
* :class:`ComponentFault`: a component (default the card reader) reports ``fault``
  (XFS ``WFS_STAT_DEVHWERROR``) and later ``ok`` again;
* :class:`NetworkOffline`: the terminal's host link is ``offline`` for a spell.

:func:`status_events` turns scenarios into contract-v1 event dicts
(``schemas/terminal-status.v1.json``) in time order, deterministic for the same
arguments; the message key of each is its ``terminal_id``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from simulators.fleet import Fleet

__all__ = [
    "CassetteDepletion",
    "ComponentFault",
    "NetworkOffline",
    "StatusScenario",
    "default_status_scenarios",
    "status_events",
]


@dataclass(frozen=True, slots=True)
class CassetteDepletion:
    """Cassette ``cassette`` of an ATM runs low, then empty; replenished if an offset is given."""

    terminal_id: str
    low_offset_s: float
    empty_offset_s: float
    replenished_offset_s: float | None = None
    cassette: int = 1


@dataclass(frozen=True, slots=True)
class ComponentFault:
    """``component`` reports a hardware fault from ``start_offset_s`` until ``end_offset_s``."""

    terminal_id: str
    start_offset_s: float
    end_offset_s: float | None = None
    component: str = "card_reader"


@dataclass(frozen=True, slots=True)
class NetworkOffline:
    """The terminal's link to the host is down from ``start_offset_s`` to ``end_offset_s``."""

    terminal_id: str
    start_offset_s: float
    end_offset_s: float | None = None


StatusScenario = CassetteDepletion | ComponentFault | NetworkOffline

# (offset, terminal, component, state, severity or None, detail)
_Step = tuple[float, str, str, str, str | None, str]


def _steps(scenario: StatusScenario) -> list[_Step]:
    if isinstance(scenario, CassetteDepletion):
        unit = f"XFS CDM cash unit {scenario.cassette}"
        steps: list[_Step] = [
            (scenario.low_offset_s, scenario.terminal_id, "cassette", "low", None,
             f"{unit} WFS_CDM_STATCULOW"),
            (scenario.empty_offset_s, scenario.terminal_id, "cassette", "empty", None,
             f"{unit} WFS_CDM_STATCUEMPTY"),
        ]
        if scenario.replenished_offset_s is not None:
            steps.append((scenario.replenished_offset_s, scenario.terminal_id, "cassette", "ok",
                          None, f"{unit} WFS_CDM_STATCUOK (replenished)"))
        return steps
    if isinstance(scenario, ComponentFault):
        steps = [(scenario.start_offset_s, scenario.terminal_id, scenario.component, "fault",
                  "critical", "WFS_STAT_DEVHWERROR")]
        if scenario.end_offset_s is not None:
            steps.append((scenario.end_offset_s, scenario.terminal_id, scenario.component, "ok",
                          None, "WFS_STAT_DEVONLINE"))
        return steps
    steps = [(scenario.start_offset_s, scenario.terminal_id, "network", "offline", None,
              "host link down")]
    if scenario.end_offset_s is not None:
        steps.append((scenario.end_offset_s, scenario.terminal_id, "network", "ok", None,
                      "host link restored"))
    return steps


def status_events(scenarios: Sequence[StatusScenario], *, start: datetime | None = None,
                  models: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Device status event dicts for ``scenarios``, in time order.

    Args:
        scenarios: what happens to which terminal, by offset (seconds) from ``start``.
        start: when the traffic starts (aware; default now, UTC).
        models: optional terminal ID → model, copied into each event's ``model``.

    Yields:
        Contract-v1 event dicts; ``occurred_at`` is RFC 3339 with offset.
    """
    origin = start or datetime.now(UTC)
    steps = sorted((step for scenario in scenarios for step in _steps(scenario)),
                   key=lambda step: (step[0], step[1], step[2]))
    for offset, terminal_id, component, state, severity, detail in steps:
        event: dict[str, Any] = {
            "event_id": f"st-{terminal_id}-{component}-{int(offset * 1000)}",
            "occurred_at": (origin + timedelta(seconds=offset)).isoformat(),
            "terminal_id": terminal_id,
            "component": component,
            "state": state,
            "detail": detail,
        }
        if severity is not None:
            event["severity"] = severity
        if models and terminal_id in models:
            event["model"] = models[terminal_id]
        yield event


def default_status_scenarios(fleet: Fleet, duration_s: float = 60.0) -> tuple[StatusScenario, ...]:
    """The demo's device trouble, scaled to ``duration_s`` seconds.

    The first ATM's cassette 1 goes low at 20 % and empty at 50 %, replenished at 85 %;
    the first POS terminal's card reader faults from 30 % to 70 %; the second ATM (or
    the first, in a one-ATM fleet) loses its host link from 40 % to 60 %.
    """
    atms = [t for t in fleet.terminals if t.channel == "ATM"]
    pos = next(t for t in fleet.terminals if t.channel == "POS")
    offline = atms[1] if len(atms) > 1 else atms[0]
    return (
        CassetteDepletion(atms[0].terminal_id, 0.2 * duration_s, 0.5 * duration_s,
                          replenished_offset_s=0.85 * duration_s),
        ComponentFault(pos.terminal_id, 0.3 * duration_s, 0.7 * duration_s),
        NetworkOffline(offline.terminal_id, 0.4 * duration_s, 0.6 * duration_s),
    )
