"""The alert jobs that claim work in the store and enqueue it: escalation, summaries, digests.

Each is one pass of a scheduled job (APScheduler, on every instance; the schedule
is the application's): it reads the store, decides from the rules what is due at
``now``, and claims it in the store — a claim is one transaction settled by a
unique key or a row lock, so running a pass again, or on several instances at
once, does each piece of work once. None of them sends anything: the delivery
worker sends the outbox rows they enqueue.

- :func:`escalate_due`: escalation steps of unacknowledged alerts
  (``escalation:``, :mod:`monitor.alerts.lifecycle`);
- :func:`summaries_due`: each capped manager's rate-cap summary
  (``rate_limit:``, :mod:`monitor.alerts.ratelimit`);
- :func:`digests_due`: each manager's daily digest at their ``digest_at``
  (:mod:`monitor.alerts.messages.digest` renders it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.alerts.lifecycle import EscalationPolicy, EscalationStep, EscalationTarget
from monitor.alerts.preferences import covering_manager, is_away, manager_zone
from monitor.alerts.ratelimit import RateLimit, Summary
from monitor.alerts.routing import channels_for
from monitor.alerts.store import AlertStore, DigestRecord
from monitor.domain import Manager, Severity
from monitor.hours import local_instant

__all__ = ["Escalation", "digests_due", "escalate_due", "summaries_due"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Escalation:
    """One step taken by :func:`escalate_due`.

    Attributes:
        alert_id: the alert.
        step: the step's number in the chain (1-based).
        to: the step's target kind.
        recipient_id: who was notified, ``None`` when the registry names nobody
            (the step is still recorded, with a note, so the chain moves on).
        deliveries_enqueued: outbox rows added for the recipient.
    """

    alert_id: str
    step: int
    to: EscalationTarget
    recipient_id: str | None
    deliveries_enqueued: int


def escalate_due(
    store: AlertStore,
    now: datetime,
    rules: EscalationPolicy,
    managers: Mapping[str, Manager],
    *,
    channels: Sequence[str] = ("email", "webhook"),
) -> list[Escalation]:
    """Take every escalation step that is due at ``now``; one pass, safe to repeat.

    For each alert of an escalating severity that is neither acknowledged nor
    resolved, every step whose ``after_seconds`` has passed since the alert was
    recorded and that was not taken yet is taken, in order: an ``escalated``
    history row and one outbox row per channel of the recipient, in one
    transaction. The step counter and the outbox's unique ``(alert_id, channel,
    recipient)`` make a second pass (or a second instance) a no-op.

    Args:
        store: the alert store.
        now: the current time (aware); inject it in tests.
        rules: the escalation chain.
        managers: the registry's managers by ID (backup and team lead contacts).
        channels: manager channels that are configured (``email``, ``webhook``).

    Returns:
        The steps taken in this pass, oldest alert first.

    Raises:
        ValueError: ``now`` is naive.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not rules.steps or not rules.severities:
        return []
    taken: list[Escalation] = []
    first_after = rules.steps[0].after_seconds
    for candidate in store.escalation_candidates(rules.severities, now, first_after, len(rules.steps)):
        age = (now - candidate.created_at).total_seconds()
        for index in range(candidate.escalation_step, len(rules.steps)):
            step = rules.steps[index]
            if age < step.after_seconds:
                break
            recipient_id = step.recipient_id(candidate.manager_id, managers)
            recipient = managers.get(recipient_id) if recipient_id else None
            note = _escalation_note(step, index + 1, recipient_id, recipient)
            enqueued = store.escalate(candidate.alert_id, index, recipient=recipient,
                                      channels=channels, note=note, at=now)
            if enqueued is None:  # acknowledged meanwhile, or another pass took the step
                break
            taken.append(Escalation(alert_id=candidate.alert_id, step=index + 1, to=step.to,
                                    recipient_id=recipient.manager_id if recipient else None,
                                    deliveries_enqueued=enqueued))
    return taken


def _escalation_note(step: EscalationStep, number: int, recipient_id: str | None,
          recipient: Manager | None) -> str:
    label = "backup manager" if step.to == "backup_manager" else "team lead"
    head = f"step {number}: not acknowledged within {step.after_seconds} s"
    if recipient_id is None:
        return f"{head}; the registry names no {label}, nobody notified"
    if recipient is None:
        return f"{head}; {label} {recipient_id} is not in the registry, nobody notified"
    return f"{head}; escalated to {label} {recipient.manager_id} ({recipient.name})"


def summaries_due(
    store: AlertStore,
    now: datetime,
    limit: RateLimit,
    managers: Mapping[str, Manager] | Iterable[Manager],
    *,
    channels: Sequence[str] = ("email", "webhook"),
) -> list[Summary]:
    """Claim and enqueue every summary due at ``now``; one pass, safe on any instance.

    Args:
        store: the alert store shared by every instance.
        now: the current time (aware).
        limit: the rate-cap rules (``summary_after_seconds``).
        managers: the registry's managers (the summary goes to whoever covers them).
        channels: the manager channels that are configured.

    Returns:
        The summaries this call claimed.

    Raises:
        ValueError: ``now`` is naive.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    people = managers if isinstance(managers, Mapping) else {m.manager_id: m for m in managers}

    def route(manager: Manager, severity: Severity) -> tuple[Manager, list[str]]:
        # Whoever covers the manager now, on their channels for the alerts' top severity.
        recipient = covering_manager(manager, people, now).manager
        return recipient, [choice.channel for choice in channels_for(recipient, severity, channels)]

    return store.claim_summaries(now - timedelta(seconds=limit.summary_after_seconds), at=now,
                                 managers=people, route=route)


def digests_due(
    store: AlertStore,
    now: datetime,
    managers: Mapping[str, Manager] | Iterable[Manager],
    *,
    channels: Sequence[str] = ("email", "webhook"),
) -> list[DigestRecord]:
    """Claim and enqueue every digest due at ``now``; one pass, safe to repeat anywhere.

    Args:
        store: the alert store shared by every instance.
        now: the current time (aware); inject it in tests.
        managers: the registry's managers (by ID, or any iterable of them).
        channels: the manager channels that are configured (``email``, ``webhook``).

    Returns:
        The digests this call claimed (the ones another pass or instance claimed are
        not in it). A digest with ``alert_count == 0`` was claimed but sends nothing.

    Raises:
        ValueError: ``now`` is naive.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    people = managers.values() if isinstance(managers, Mapping) else managers
    claimed: list[DigestRecord] = []
    for manager in people:
        if manager.digest_at is None or is_away(manager, now):
            continue
        zone = manager_zone(manager)
        today = now.astimezone(zone).date()
        if now < local_instant(today, manager.digest_at, zone):
            continue
        record = store.claim_digest(manager, today, at=now, channels=channels)
        if record is not None:
            claimed.append(record)
    return claimed
