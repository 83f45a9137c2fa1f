"""An alert's lifecycle: its states, its history and its escalation chain.

States (``alerts.state``), and what moves an alert between them::

    open ──(a person's channel accepted it)──▶ notified ──(ack)──▶ acknowledged ──(resolve)──▶ resolved
      │  ▲                                        ▲
      │  └──(resent)── failed ─(a later delivery to a person is sent)─┘
      └─(every delivery to a person failed)──▶ failed
    open / notified / failed ──(ack)──▶ acknowledged

``notified`` means a person's channel accepted a message about the alert: e-mail
(the relay took it), webhook (2xx), Apprise -- to the client's manager, their backup
or the escalation's recipient, or an incident notice or rate-cap summary naming it.
A sink that only records (``console``, ``jsonl``) or the operations sink
(``alertmanager``) never makes an alert notified, nor does the operations fallback.

``escalated`` and ``fallback`` are events, not states: they are written to the
history and the alert keeps its state. Every change and every event is one row of
the alert's history: what happened, the state before and after, who (a manager ID,
an operator's name, ``cardmon``), when (UTC), through which channel (``pipeline``,
``email``, ``webhook``, ``api``, ``link``, ``cli``, ``escalation``, ``fallback``)
and a note.

Rules: acknowledging twice is one transition (the second is a no-op); resolving
needs an acknowledgement first (someone owned the alert) and resolving twice is a
no-op; an acknowledged or resolved alert never escalates.

Escalation (``escalation:`` in ``rules/alerting.yaml``): for an alert of a listed
severity that is still not acknowledged ``after_seconds`` after it was recorded,
step *n* writes an ``escalated`` history row and enqueues deliveries to the step's
recipient — the client's manager's backup (``backup_manager_id`` in the registry)
or the team lead named in the step. :func:`escalate_due` is one pass; call it from
a scheduler job (APScheduler ``interval``), any number of times, from any number of
instances: each step happens once per alert.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from monitor.domain import SEVERITIES, Manager, Severity
from monitor.errors import CardmonError, ConfigurationError
from monitor.rulebook import RuleFile

if TYPE_CHECKING:
    from monitor.alerts.store import AlertStore

__all__ = [
    "ALERT_STATES",
    "AlertNotFoundError",
    "AlertState",
    "Escalation",
    "EscalationPolicy",
    "EscalationRulesError",
    "EscalationStep",
    "HistoryAction",
    "HistoryEntry",
    "LifecycleError",
    "StateConflictError",
    "Transition",
    "escalate_due",
]

AlertState = Literal["open", "notified", "acknowledged", "resolved", "failed"]
ALERT_STATES: tuple[AlertState, ...] = ("open", "notified", "acknowledged", "resolved", "failed")
#: What a history row records. ``resent``: someone put failed deliveries back in the
#: outbox; ``fallback``: a delivery kept failing and the fallback (the backup manager,
#: operations) was told; ``corrected``: schema 5 recomputed a state (see schema.py).
HistoryAction = Literal["opened", "notified", "failed", "escalated", "acknowledged", "resolved",
                        "resent", "fallback", "corrected"]
#: Who writes the rows the monitor itself causes.
SYSTEM_ACTOR: Final = "cardmon"
#: Escalation targets a step may name.
EscalationTarget = Literal["backup_manager", "team_lead"]
_TARGETS: Final = ("backup_manager", "team_lead")


class EscalationRulesError(ConfigurationError):
    """The ``escalation:`` section of the alert policy is invalid (the message names the entry)."""


class LifecycleError(CardmonError):
    """An acknowledgement or resolution could not be applied (nothing changed)."""


class AlertNotFoundError(LifecycleError, LookupError):
    """No alert has this ID."""


class StateConflictError(LifecycleError):
    """The alert's state does not allow this change (e.g. resolve before acknowledge).

    Attributes:
        state: the alert's current state.
    """

    def __init__(self, message: str, state: AlertState) -> None:
        super().__init__(message)
        self.state = state


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """One row of an alert's history.

    Attributes:
        history_id: increasing row ID (the order things happened in).
        alert_id: the alert.
        action: what happened.
        from_state: the state before (``None`` for ``opened``).
        to_state: the state after (equal to ``from_state`` for an event such as
            ``escalated`` or a second delivery's ``notified``).
        actor: manager ID, operator name or ``cardmon``.
        via: the channel it came through (``pipeline``, ``email``, ``api``, ``link``, ``cli``...).
        note: free text (PAN-scrubbed), ``None`` if none.
        at: when it happened (UTC, aware).
    """

    history_id: int
    alert_id: str
    action: HistoryAction
    from_state: AlertState | None
    to_state: AlertState
    actor: str
    via: str
    note: str | None
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """The result of an acknowledgement or resolution.

    Attributes:
        alert_id: the alert.
        state: its state after the call.
        changed: ``False`` when it was already in that state (idempotent repeat).
        entry: the history row written, ``None`` when nothing changed.
    """

    alert_id: str
    state: AlertState
    changed: bool
    entry: HistoryEntry | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EscalationStep:
    """One step of the chain.

    Attributes:
        after_seconds: seconds after the alert was recorded (wall clock) at which an
            unacknowledged alert takes this step.
        to: ``backup_manager`` (the client's manager's backup in the registry) or
            ``team_lead``.
        team_lead_id: the team lead's manager ID in the registry (``team_lead`` only).
    """

    after_seconds: int
    to: EscalationTarget
    team_lead_id: str | None = None

    def recipient_id(self, manager_id: str, managers: Mapping[str, Manager]) -> str | None:
        """The manager ID this step notifies for an alert of ``manager_id``."""
        if self.to == "team_lead":
            return self.team_lead_id
        manager = managers.get(manager_id)
        return manager.backup_manager_id if manager is not None else None


@dataclass(frozen=True, slots=True, kw_only=True)
class EscalationPolicy:
    """The ``escalation:`` section of ``rules/alerting.yaml``.

    Attributes:
        severities: the severities that escalate.
        steps: the chain, ``after_seconds`` strictly increasing.
    """

    severities: tuple[Severity, ...] = ()
    steps: tuple[EscalationStep, ...] = ()

    @classmethod
    def load(cls, path: Path) -> EscalationPolicy:
        """Read the ``escalation:`` section of an alert policy file (absent → no escalation).

        Raises:
            EscalationRulesError: unreadable or not strict YAML, or an invalid section
                (the message names the entry).
        """
        return cls.from_rules(RuleFile.read(path, error=EscalationRulesError))

    @classmethod
    def from_rules(cls, rules: RuleFile) -> EscalationPolicy:
        """Build the policy from the alert policy file's ``escalation:`` section (absent → none).

        Raises:
            EscalationRulesError: the file is no mapping or the section is invalid.
        """
        data = rules.document or {}
        if not isinstance(data, dict):
            raise EscalationRulesError(f"{rules.path}: expected a mapping")
        return cls.from_mapping(data.get("escalation"), source=str(rules.path))

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "<escalation>") -> EscalationPolicy:
        """Build the policy from the section's mapping (``None`` → no escalation).

        Raises:
            EscalationRulesError: an unknown severity or target, a missing ``team_lead_id``, a
                non-positive or non-increasing ``after_seconds``.
        """
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise EscalationRulesError(f"{source}: escalation must be a mapping with severities and steps")
        severities = data.get("severities") or []
        if not isinstance(severities, list) or any(s not in SEVERITIES for s in severities):
            raise EscalationRulesError(f"{source}: escalation.severities must list some of "
                             f"{', '.join(SEVERITIES)}")
        raw_steps = data.get("steps") or []
        if not isinstance(raw_steps, list):
            raise EscalationRulesError(f"{source}: escalation.steps must be a list")
        steps: list[EscalationStep] = []
        for number, raw in enumerate(raw_steps, start=1):
            where = f"{source}: escalation step {number}"
            if not isinstance(raw, dict):
                raise EscalationRulesError(f"{where} must be a mapping")
            after = raw.get("after_seconds")
            if not isinstance(after, int) or isinstance(after, bool) or after <= 0:
                raise EscalationRulesError(f"{where}: after_seconds must be a positive integer")
            if steps and after <= steps[-1].after_seconds:
                raise EscalationRulesError(f"{where}: after_seconds must be later than the step before")
            target = raw.get("to")
            if target not in _TARGETS:
                raise EscalationRulesError(f"{where}: 'to' must be one of {', '.join(_TARGETS)}")
            lead = raw.get("team_lead_id")
            if target == "team_lead" and not (isinstance(lead, str) and lead):
                raise EscalationRulesError(f"{where}: a team_lead step needs team_lead_id")
            steps.append(EscalationStep(after_seconds=after, to=target,
                                        team_lead_id=str(lead) if lead else None))
        return cls(severities=tuple(severities), steps=tuple(steps))


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
            note = _note(step, index + 1, recipient_id, recipient)
            enqueued = store.escalate(candidate.alert_id, index, recipient=recipient,
                                      channels=channels, note=note, at=now)
            if enqueued is None:  # acknowledged meanwhile, or another pass took the step
                break
            taken.append(Escalation(alert_id=candidate.alert_id, step=index + 1, to=step.to,
                                    recipient_id=recipient.manager_id if recipient else None,
                                    deliveries_enqueued=enqueued))
    return taken


def _note(step: EscalationStep, number: int, recipient_id: str | None,
          recipient: Manager | None) -> str:
    label = "backup manager" if step.to == "backup_manager" else "team lead"
    head = f"step {number}: not acknowledged within {step.after_seconds} s"
    if recipient_id is None:
        return f"{head}; the registry names no {label}, nobody notified"
    if recipient is None:
        return f"{head}; {label} {recipient_id} is not in the registry, nobody notified"
    return f"{head}; escalated to {label} {recipient.manager_id} ({recipient.name})"
