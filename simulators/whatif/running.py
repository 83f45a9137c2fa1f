"""One what-if run: a recording through one policy, offline, on the live monitor's code paths.

:class:`PolicyReplay` builds a whole :class:`~monitor.app.MonitorApp` from the run's
settings (:func:`~simulators.whatif.rules.run_settings`: the policy's rule files, a
throwaway SQLite store) and never starts it: no consumer, no delivery worker, no
channel, no scheduler, nothing sent. :meth:`PolicyReplay.run` then does, for each
batch of :func:`~simulators.whatif.traffic.batches`:

1. ``app.processor.process(values)``: decoding, classification, VIP lookup, the alert
   policy, the event clock, terminal health, storm control — the live processor;
2. when the batch has VIP failures or incident changes, the jobs that were due
   before it (below), then ``app.store.record(...)`` exactly as ``MonitorApp._record``
   does, at the batch's time (:attr:`~simulators.whatif.traffic.Batch.at`), with the
   manager channels ``email``, ``webhook`` and ``apprise`` all configured, no sink,
   and nothing late.

The scheduled jobs run on the recording's clock, each at the instant it falls due:

* *delivery*: every outbox row due is taken (``claim_due``) and marked sent at its
  due time (``mark_many_sent``): a channel that accepts everything at once. That is
  what lets a second incident notice follow the first, a resolved notice go out, and
  a held alert go on its own instead of being folded later;
* *rate-cap summaries*: :func:`monitor.alerts.jobs.summaries_due` when the oldest
  capped alert has waited ``summary_after_seconds`` (live: up to
  ``alerting.summary_interval_seconds`` later);
* *digests*: :func:`monitor.alerts.jobs.digests_due` at each manager's ``digest_at``
  on each local day, skipped while the manager got no alert since their last digest
  (a digest of nothing sends nothing), and once more a day after the last event, so
  the recording's last day has its digest too.

Escalation is not run: whether a manager acknowledges in time is not in a recording.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from prometheus_client import CollectorRegistry

from monitor.alerts.jobs import digests_due, summaries_due
from monitor.alerts.preferences import manager_zone
from monitor.alerts.routing import MANAGER_CHANNEL_KINDS
from monitor.app import MonitorApp
from monitor.config import Settings
from monitor.domain import Manager
from monitor.errors import ConfigurationError
from monitor.hours import local_instant
from simulators.whatif.outcome import (
    AlertRow,
    IncidentRow,
    ManagerCounts,
    next_summary_due,
    open_reader,
    read_outcome,
)
from simulators.whatif.rules import RuleFiles, run_settings
from simulators.whatif.traffic import (
    DEFAULT_FAILURE_SECONDS,
    DEFAULT_MAX_EVENTS,
    batches,
)

__all__ = ["CLOSING", "PolicyReplay", "PolicyRun", "run_policy"]

log = logging.getLogger(__name__)

#: How long after the last event the jobs still run (the last day's digest, summaries due).
CLOSING: Final = timedelta(days=1)
#: Outbox rows taken per pass of the pretend delivery.
_CLAIM: Final = 500


@dataclass(frozen=True, slots=True)
class PolicyRun:
    """What one policy would have done with the recording.

    Attributes:
        label: ``current`` or ``proposed``.
        rules: the rule files of the run.
        events: events processed (valid ones; rejected ones are in ``rejected``).
        rejected: messages the decoder refused (dead letters live).
        vip_failures: VIP failures the policy said must alert.
        first_event: event time of the first event (``None``: empty recording).
        last_event: event time of the last one.
        managers: counts per manager ID (:class:`~simulators.whatif.outcome.ManagerCounts`).
        alerts: every alert (:class:`~simulators.whatif.outcome.AlertRow`), by window start.
        incidents: every incident (:class:`~simulators.whatif.outcome.IncidentRow`), by start.
    """

    label: str
    rules: RuleFiles
    events: int
    rejected: int
    vip_failures: int
    first_event: datetime | None
    last_event: datetime | None
    managers: Mapping[str, ManagerCounts]
    alerts: tuple[AlertRow, ...]
    incidents: tuple[IncidentRow, ...]


def _digest_instants(managers: Mapping[str, Manager], start: datetime,
                     end: datetime) -> list[tuple[datetime, str]]:
    """``(instant, manager_id)`` of every ``digest_at`` in ``[start - 1 day, end]``, in order."""
    instants: list[tuple[datetime, str]] = []
    for manager in managers.values():
        if manager.digest_at is None:
            continue
        zone = manager_zone(manager)
        day, last = (start - timedelta(days=1)).astimezone(zone).date(), end.astimezone(zone).date()
        while day <= last:
            instants.append((local_instant(day, manager.digest_at, zone), manager.manager_id))
            day += timedelta(days=1)
    return sorted(instants)


class _Jobs:
    """The scheduled alert jobs of one run, on the recording's clock (see the module docstring)."""

    def __init__(self, app: MonitorApp, reader: sqlite3.Connection, start: datetime, end: datetime) -> None:
        self._app = app
        self._reader = reader
        self._managers = app.vip_registry.current.managers
        self._digests = _digest_instants(self._managers, start, end)
        self._next_digest = 0
        self._waiting: set[str] = set()  # managers with an alert since their last digest
        self._summaries_seen: datetime | None = None

    def alerted(self, manager_ids: Sequence[str]) -> None:
        """Note the managers whose clients just got alerts (their next digest has something)."""
        self._waiting.update(manager_ids)

    def run_until(self, now: datetime) -> None:
        """Run every job due at or before ``now``, each at its own instant, then deliver what is due at ``now``."""
        store, limit = self._app.store, self._app.rate_limit
        while True:
            summary = next_summary_due(self._reader, limit.summary_after_seconds) if limit else None
            if summary is not None and (summary > now or summary == self._summaries_seen):
                summary = None
            while (self._next_digest < len(self._digests) and self._digests[self._next_digest][0] <= now
                   and self._digests[self._next_digest][1] not in self._waiting):
                self._next_digest += 1
            digest = (self._digests[self._next_digest][0]
                      if self._next_digest < len(self._digests)
                      and self._digests[self._next_digest][0] <= now else None)
            due = min((moment for moment in (summary, digest) if moment is not None), default=None)
            if due is None:
                break
            self.deliver(due)
            if due == summary and limit is not None:
                self._summaries_seen = summary
                summaries_due(store, due, limit, self._managers, channels=MANAGER_CHANNEL_KINDS)
            if due == digest:
                self._next_digest += 1
                for record in digests_due(store, due, self._managers, channels=MANAGER_CHANNEL_KINDS):
                    self._waiting.discard(record.manager_id)
        self.deliver(now)

    def deliver(self, now: datetime) -> None:
        """Mark every outbox row due at ``now`` sent, at its due time (a channel that accepts everything)."""
        while claimed := self._app.store.claim_due(now, _CLAIM):
            self._app.store.mark_many_sent({d.delivery_id: d.next_attempt_at for d in claimed})


class PolicyReplay:
    """One policy's offline monitor, built and checked before anything runs.

    Args:
        settings: the operator's settings.
        rules: the policy (:class:`~simulators.whatif.rules.RuleFiles`).
        workdir: an empty folder for the throwaway store (the caller removes it).
        label: ``current`` or ``proposed``.
        registry: ``(customers, managers)`` replacing the settings' VIP registry.

    Raises:
        monitor.errors.ConfigurationError: a rule file or the registry is invalid
            (one line naming the file), or the registry has no client.
    """

    def __init__(self, settings: Settings, rules: RuleFiles, workdir: Path, *, label: str,
                 registry: tuple[Path, Path] | None = None) -> None:
        self.label = label
        self.rules = rules
        self.store_path = workdir / f"{label}.db"
        self.app = MonitorApp(run_settings(settings, rules, self.store_path, registry=registry),
                              metrics_registry=CollectorRegistry())
        try:
            # What run() does first: load the VIP registry, refusing a bad or missing one.
            registry_now = self.app.vip_registry.load()
            if not len(registry_now):
                raise ConfigurationError(
                    "the VIP registry has no client: give --registry DIR (customers.csv, managers.csv) "
                    "or registry.customers_path and registry.managers_path in the settings")
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        """Stop terminal health's thread and close the store (idempotent)."""
        self.app.health.worker.close()
        self.app.store.close()

    def run(self, events: Sequence[Mapping[str, Any]], *, max_events: int = DEFAULT_MAX_EVENTS,
            failure_seconds: float = DEFAULT_FAILURE_SECONDS) -> PolicyRun:
        """Replay ``events`` (time-sorted, :func:`~simulators.whatif.traffic.read_traffic`); closes the replay.

        Returns:
            The frozen :class:`PolicyRun`.
        """
        app = self.app
        processed = rejected = failures = 0
        first = events[0]["occurred_at"] if events else None
        last = events[-1]["occurred_at"] if events else None
        try:
            with closing(open_reader(self.store_path)) as reader:
                jobs = _Jobs(app, reader, first, last + CLOSING) if first and last else None
                for batch in batches(events, max_events=max_events, failure_seconds=failure_seconds):
                    result = app.processor.process(list(batch.values))
                    processed += result.events
                    rejected += len(result.rejections)
                    failures += len(result.failures)
                    if not (result.failures or result.incidents) or jobs is None:
                        continue
                    jobs.run_until(batch.at)
                    self._record(result.failures, result.incidents, batch.at)
                    jobs.alerted([failure.manager.manager_id for failure in result.failures])
                if jobs is not None and last is not None:
                    jobs.run_until(last + CLOSING)
                app.health.worker.drain()
        finally:
            self.close()
        outcome = read_outcome(self.store_path)
        return PolicyRun(label=self.label, rules=self.rules, events=processed, rejected=rejected,
                         vip_failures=failures, first_event=first, last_event=last,
                         managers=outcome.managers, alerts=outcome.alerts, incidents=outcome.incidents)

    def _record(self, failures: Sequence[Any], incidents: Sequence[Any], at: datetime) -> None:
        # As MonitorApp._record, with the run's clock, every manager channel, no sink,
        # nothing late (the recording is old on purpose).
        app = self.app
        app.store.record(
            failures, window_seconds=app.policy.grouping_window_seconds, sinks=(),
            channels=MANAGER_CHANNEL_KINDS, now=at, managers=app.vip_registry.current.managers,
            incidents=incidents, incident_rules=app.incident_rules, rate_limit=app.rate_limit,
            stale_after_seconds=None)


def run_policy(events: Sequence[Mapping[str, Any]], settings: Settings, rules: RuleFiles,
               workdir: Path, *, label: str = "current", registry: tuple[Path, Path] | None = None,
               max_events: int = DEFAULT_MAX_EVENTS,
               failure_seconds: float = DEFAULT_FAILURE_SECONDS) -> PolicyRun:
    """Build a :class:`PolicyReplay` and run it (see the module docstring).

    Raises:
        monitor.errors.ConfigurationError: as :class:`PolicyReplay`.
    """
    replay = PolicyReplay(settings, rules, workdir, label=label, registry=registry)
    return replay.run(events, max_events=max_events, failure_seconds=failure_seconds)
