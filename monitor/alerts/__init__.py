"""VIP failure alerts: the durable store and outbox, rendering, channels and delivery.

The pipeline calls :meth:`AlertStore.record` (one transaction, committed before the
Kafka offsets); :class:`DeliveryWorker` sends what the outbox holds through the
channels; :func:`export_jsonl` writes the stored alerts out.

``monitor.alerts.render.render`` is not re-exported here: the name would hide the
``render`` submodule.
"""

from monitor.alerts.channels import (
    Channel,
    ConsoleChannel,
    DeliveryError,
    EmailChannel,
    JsonLinesChannel,
    WebhookChannel,
)
from monitor.alerts.delivery import DeliveryResult, DeliveryWorker, ResultCallback
from monitor.alerts.export import export_jsonl
from monitor.alerts.model import (
    Alert,
    AlertEvent,
    AlertStatus,
    Delivery,
    DeliveryStatus,
    Manager,
    Severity,
    VipFailure,
)
from monitor.alerts.render import AlertMessage, format_amount
from monitor.alerts.store import AlertStore, RecordResult, alert_id_for, window_start_for

__all__ = [
    "Alert",
    "AlertEvent",
    "AlertMessage",
    "AlertStatus",
    "AlertStore",
    "Channel",
    "ConsoleChannel",
    "Delivery",
    "DeliveryError",
    "DeliveryResult",
    "DeliveryStatus",
    "DeliveryWorker",
    "EmailChannel",
    "JsonLinesChannel",
    "Manager",
    "RecordResult",
    "ResultCallback",
    "Severity",
    "VipFailure",
    "WebhookChannel",
    "alert_id_for",
    "export_jsonl",
    "format_amount",
    "window_start_for",
]
