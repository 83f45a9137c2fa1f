"""A what-if comparison for people (aligned text) and for machines (JSON).

:func:`render_text` prints the per-manager table — each cell ``current → proposed
(difference)`` — then the incidents and the alerts that appear, disappear or change
(the lists cut at ``limit`` lines each; the JSON has them all). :func:`render_json`
is a plain dict, times in RFC 3339 UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from simulators.whatif.comparing import AlertChange, ManagerDifference, WhatIf
from simulators.whatif.outcome import AlertRow, IncidentRow
from simulators.whatif.rules import RuleFiles
from simulators.whatif.running import PolicyRun

__all__ = ["COLUMNS", "render_json", "render_text"]

#: Table columns: the count name and its heading.
COLUMNS: Final = (("alerts", "alerts"), ("notifications", "notifications"),
                  ("incident_notices", "incident notices"), ("summaries", "summaries"),
                  ("digests", "digests"))


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _cell(before: int, after: int) -> str:
    change = after - before
    return f"{before} → {after}" + (f" ({change:+d})" if change else "")


def _rules(rules: RuleFiles, base: RuleFiles | None) -> str:
    files = rules.by_name()
    if base is None:
        return ", ".join(str(path) for path in files.values())
    own = [str(path) for name, path in files.items() if path != base.by_name()[name]]
    return ", ".join(own) + " (the rest as current)" if own else "the same files as current"


def _table(rows: Sequence[ManagerDifference]) -> list[str]:
    cells = [["manager", *(heading for _, heading in COLUMNS)]]
    for row in rows:
        before, after = row.current.as_dict(), row.proposed.as_dict()
        cells.append([row.manager_id, *(_cell(before[name], after[name]) for name, _ in COLUMNS)])
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            for line in cells]


def _alert(alert: AlertRow) -> str:
    return (f"{alert.alert_id}  {alert.customer_name} ({alert.customer_id}), manager {alert.manager_id}, "
            f"{alert.severity}, window {_when(alert.window_start)}, {alert.events} failure(s), "
            f"{alert.delivery}")


def _change(change: AlertChange) -> str:
    before, after = change.current, change.proposed
    parts = [f"severity {before.severity} → {after.severity}" if before.severity != after.severity else "",
             f"delivery {before.delivery} → {after.delivery}" if before.delivery != after.delivery else ""]
    return (f"{after.alert_id}  {after.customer_name} ({after.customer_id}), manager {after.manager_id}, "
            f"window {_when(after.window_start)}: " + ", ".join(part for part in parts if part))


def _incident(incident: IncidentRow) -> str:
    return (f"{incident.scope} {incident.scope_key}, from {_when(incident.started_at)}, "
            f"{incident.failures} failure(s), {incident.alerts} VIP alert(s)"
            + ("" if incident.ended else ", still open at the end"))


def _listing(title: str, lines: Sequence[str], limit: int) -> list[str]:
    out = [f"{title} ({len(lines)})" + (":" if lines else "")]
    out += [f"  {line}" for line in lines[:limit]]
    if len(lines) > limit:
        out.append(f"  ... and {len(lines) - limit} more (--json has them all)")
    return out


def render_text(result: WhatIf, *, recording: Path | None = None, limit: int = 50) -> str:
    """The comparison as text lines (no colour, no trailing newline).

    Args:
        result: the comparison.
        recording: the recording's path, for the heading.
        limit: most lines per list of alerts or incidents.
    """
    current, proposed = result.current, result.proposed
    span = f"{_when(current.first_event)} to {_when(current.last_event)}"
    lines = [
        (f"What-if{f' on {recording}' if recording else ''}: {current.events:,} events, {span}; "
         "nothing was sent."),
        f"  current:  {_rules(current.rules, None)}",
        f"  proposed: {_rules(proposed.rules, current.rules)}",
        f"  VIP failures that alert: {_cell(current.vip_failures, proposed.vip_failures)}",
        "",
        "Per manager (current → proposed (difference)):",
        *(f"  {line}" for line in _table([*result.managers, result.totals()])),
        "",
        f"Incidents: {_cell(len(current.incidents), len(proposed.incidents))}",
        *_listing("Incidents that appear", [_incident(i) for i in result.incidents_appeared], limit),
        *_listing("Incidents that disappear", [_incident(i) for i in result.incidents_disappeared], limit),
        "",
        *_listing("Alerts that appear", [_alert(a) for a in result.appeared], limit),
        *_listing("Alerts that disappear", [_alert(a) for a in result.disappeared], limit),
        *_listing("Alerts that change", [_change(c) for c in result.changed], limit),
    ]
    return "\n".join(lines)


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _alert_json(alert: AlertRow) -> dict[str, Any]:
    return {"alert_id": alert.alert_id, "customer_id": alert.customer_id,
            "customer_name": alert.customer_name, "manager_id": alert.manager_id,
            "severity": alert.severity, "window_start": _time(alert.window_start),
            "events": alert.events, "delivery": alert.delivery}


def _incident_json(incident: IncidentRow) -> dict[str, Any]:
    return {"incident_id": incident.incident_id, "scope": incident.scope, "scope_key": incident.scope_key,
            "started_at": _time(incident.started_at), "ended": incident.ended,
            "failures": incident.failures, "alerts": incident.alerts}


def _run_json(run: PolicyRun) -> dict[str, Any]:
    return {"rules": {name: str(path) for name, path in run.rules.by_name().items()},
            "events": run.events, "rejected": run.rejected, "vip_failures": run.vip_failures,
            "first_event": _time(run.first_event), "last_event": _time(run.last_event),
            "incidents": [_incident_json(incident) for incident in run.incidents]}


def render_json(result: WhatIf) -> dict[str, Any]:
    """The comparison as a JSON-ready dict.

    Shape: ``{"current": run, "proposed": run, "managers": [{"manager_id", "current":
    counts, "proposed": counts, "difference": counts}], "totals": {...same...},
    "alerts": {"appeared": [alert], "disappeared": [alert], "changed": [{"current":
    alert, "proposed": alert}]}, "incidents": {"appeared": [...], "disappeared": [...]}}``
    where counts are :meth:`~simulators.whatif.outcome.ManagerCounts.as_dict`.
    """
    def manager(row: ManagerDifference) -> dict[str, Any]:
        return {"manager_id": row.manager_id, "current": row.current.as_dict(),
                "proposed": row.proposed.as_dict(), "difference": row.difference()}

    return {
        "current": _run_json(result.current),
        "proposed": _run_json(result.proposed),
        "managers": [manager(row) for row in result.managers],
        "totals": manager(result.totals()),
        "alerts": {"appeared": [_alert_json(a) for a in result.appeared],
                   "disappeared": [_alert_json(a) for a in result.disappeared],
                   "changed": [{"current": _alert_json(c.current), "proposed": _alert_json(c.proposed)}
                               for c in result.changed]},
        "incidents": {"appeared": [_incident_json(i) for i in result.incidents_appeared],
                      "disappeared": [_incident_json(i) for i in result.incidents_disappeared]},
    }
