"""Two what-if runs side by side: per-manager differences, alerts that appear or disappear.

:func:`compare` is pure (two :class:`~simulators.whatif.running.PolicyRun` values in,
one :class:`WhatIf` out); :func:`what_if` builds both offline monitors first (so a bad
rule file is refused before anything runs), then replays the recording through each.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.config import Settings
from simulators.whatif.outcome import AlertRow, IncidentRow, ManagerCounts
from simulators.whatif.rules import RuleFiles
from simulators.whatif.running import PolicyReplay, PolicyRun
from simulators.whatif.traffic import DEFAULT_FAILURE_SECONDS, DEFAULT_MAX_EVENTS

__all__ = ["AlertChange", "ManagerDifference", "WhatIf", "compare", "what_if"]


@dataclass(frozen=True, slots=True)
class ManagerDifference:
    """One manager's counts under both policies.

    Attributes:
        manager_id: the manager.
        current: counts under the current policy (all zero when it had none).
        proposed: counts under the proposed policy.
    """

    manager_id: str
    current: ManagerCounts
    proposed: ManagerCounts

    def difference(self) -> dict[str, int]:
        """``proposed - current`` per count name (``alerts``, ``notifications``, ...)."""
        before, after = self.current.as_dict(), self.proposed.as_dict()
        return {name: after[name] - before[name] for name in before}


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An alert both policies raise, at another severity or reaching its manager another way.

    Attributes:
        current: the alert under the current policy.
        proposed: the same alert (same ID) under the proposed one.
    """

    current: AlertRow
    proposed: AlertRow


@dataclass(frozen=True, slots=True)
class WhatIf:
    """The comparison.

    Attributes:
        current: the current policy's run.
        proposed: the proposed policy's run.
        managers: one :class:`ManagerDifference` per manager with anything in either
            run, by manager ID.
        appeared: alerts only the proposed policy raises, by window start then ID.
        disappeared: alerts only the current policy raises.
        changed: alerts both raise with another severity or delivery.
        incidents_appeared: incidents (by scope and key) only the proposed policy opens.
        incidents_disappeared: incidents only the current policy opens.
    """

    current: PolicyRun
    proposed: PolicyRun
    managers: tuple[ManagerDifference, ...]
    appeared: tuple[AlertRow, ...]
    disappeared: tuple[AlertRow, ...]
    changed: tuple[AlertChange, ...]
    incidents_appeared: tuple[IncidentRow, ...]
    incidents_disappeared: tuple[IncidentRow, ...]

    def totals(self) -> ManagerDifference:
        """All managers added up (``manager_id`` is ``"all"``)."""
        def add(counts: Sequence[ManagerCounts]) -> ManagerCounts:
            return ManagerCounts(**{name: sum(c.as_dict()[name] for c in counts)
                                    for name in ManagerCounts().as_dict()})
        return ManagerDifference("all", add([m.current for m in self.managers]),
                                 add([m.proposed for m in self.managers]))


def _by_scope(incidents: Sequence[IncidentRow]) -> dict[tuple[str, str], IncidentRow]:
    found: dict[tuple[str, str], IncidentRow] = {}
    for incident in incidents:
        found.setdefault((incident.scope, incident.scope_key), incident)
    return found


def compare(current: PolicyRun, proposed: PolicyRun) -> WhatIf:
    """Compare two runs of the same recording.

    Alerts are matched by ID (client and window start): a changed grouping window
    makes every alert a new one. Incidents are matched by scope and key.
    """
    names = sorted(set(current.managers) | set(proposed.managers))
    managers = tuple(ManagerDifference(name, current.managers.get(name, ManagerCounts()),
                                       proposed.managers.get(name, ManagerCounts())) for name in names)
    before: Mapping[str, AlertRow] = {alert.alert_id: alert for alert in current.alerts}
    after: Mapping[str, AlertRow] = {alert.alert_id: alert for alert in proposed.alerts}
    changed = tuple(AlertChange(before[alert_id], alert) for alert_id, alert in after.items()
                    if alert_id in before and (before[alert_id].severity, before[alert_id].delivery)
                    != (alert.severity, alert.delivery))
    old, new = _by_scope(current.incidents), _by_scope(proposed.incidents)
    return WhatIf(
        current=current, proposed=proposed, managers=managers,
        appeared=tuple(alert for alert in proposed.alerts if alert.alert_id not in before),
        disappeared=tuple(alert for alert in current.alerts if alert.alert_id not in after),
        changed=changed,
        incidents_appeared=tuple(incident for key, incident in new.items() if key not in old),
        incidents_disappeared=tuple(incident for key, incident in old.items() if key not in new),
    )


def what_if(events: Sequence[Mapping[str, Any]], settings: Settings, current: RuleFiles,
            proposed: RuleFiles, *, registry: tuple[Path, Path] | None = None,
            max_events: int = DEFAULT_MAX_EVENTS,
            failure_seconds: float = DEFAULT_FAILURE_SECONDS) -> WhatIf:
    """Replay ``events`` through both policies and compare them; nothing is sent.

    Args:
        events: time-sorted event dicts (:func:`~simulators.whatif.traffic.read_traffic`).
        settings: the operator's settings (the VIP registry, event time, ...).
        current: the current policy's rule files.
        proposed: the proposed policy's rule files.
        registry: ``(customers, managers)`` replacing the settings' VIP registry.
        max_events: most events per batch.
        failure_seconds: how long a batch runs on after its first possible failure.

    Raises:
        monitor.errors.ConfigurationError: a rule file (of either policy) or the
            registry is invalid; nothing ran.
    """
    with tempfile.TemporaryDirectory(prefix="cardmon-whatif-") as scratch:
        work = Path(scratch)
        replays: list[PolicyReplay] = []
        try:
            for label, rules in (("current", current), ("proposed", proposed)):
                replays.append(PolicyReplay(settings, rules, work, label=label, registry=registry))
        except BaseException:
            for replay in replays:
                replay.close()
            raise
        runs = []
        for index, replay in enumerate(replays):
            try:
                runs.append(replay.run(events, max_events=max_events, failure_seconds=failure_seconds))
            except BaseException:
                for other in replays[index + 1:]:
                    other.close()
                raise
        return compare(runs[0], runs[1])
