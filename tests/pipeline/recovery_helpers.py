"""Builders shared by the recovery watch's tests: a VIP client's failed withdrawal, approvals.

Plain functions, not fixtures: ``tests/pipeline/test_recovery.py`` (one instance, any
order), ``tests/pipeline/test_recovery_instances.py`` (two instances on PostgreSQL) and
``tests/test_api_recovery.py`` (the API's ``recovery``) build their failures (and their
batches' approvals) with them.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from monitor.domain import AlertEvent, Manager, VipFailure
from monitor.pipeline.processor import APPROVAL_COLUMNS

__all__ = ["APPROVAL_SCHEMA", "approval_frame", "withdrawal_failure"]

#: The schema of :attr:`~monitor.pipeline.processor.ProcessedBatch.approvals`.
APPROVAL_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String(),
    "channel": pl.String(),
    "txn_type": pl.String(),
    "occurred_at": pl.Datetime("us", "UTC"),
    "event_id": pl.String(),
    "terminal_id": pl.String(),
    "merchant_id": pl.String(),
}
assert tuple(APPROVAL_SCHEMA) == APPROVAL_COLUMNS


def withdrawal_failure(event_id: str, occurred_at: datetime, *, customer_id: str,
                       manager: Manager, merchant_id: str | None = "BNK0001") -> VipFailure:
    """A VIP client's ATM withdrawal at ATM00042 that failed (code 91, technical), EUR 200.00.

    Args:
        event_id: the failed transaction's event ID.
        occurred_at: its event time (aware).
        customer_id: the VIP client (called "Ada", tier ``private``, severity ``high``).
        manager: their relationship manager.
        merchant_id: the ATM's merchant (``None``: none).
    """
    event = AlertEvent(
        event_id=event_id,
        occurred_at=occurred_at,
        channel="ATM",
        terminal_id="ATM00042",
        merchant_id=merchant_id,
        txn_type="withdrawal",
        amount_minor=20000,
        currency="EUR",
        response_code="91",
        outcome="technical",
        response_meaning="Issuer unavailable",
    )
    return VipFailure(event=event, customer_id=customer_id, customer_name="Ada", tier="private",
                      manager=manager, severity="high", suggested_action="Call the client.")


def approval_frame(*rows: tuple[str, datetime, str, str, str]) -> pl.DataFrame:
    """A batch's approved withdrawals, as :attr:`ProcessedBatch.approvals` holds them.

    Args:
        rows: ``(event_id, occurred_at, customer_id, channel, terminal_id)`` each, a
            ``withdrawal`` without merchant.
    """
    return pl.DataFrame(
        [(customer, channel, "withdrawal", at, event_id, terminal, None)
         for event_id, at, customer, channel, terminal in rows],
        schema=APPROVAL_SCHEMA, orient="row")
