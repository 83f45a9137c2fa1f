"""cardmon: card-transaction health monitor (ISO 8583 outcomes, VIP alerts, terminal health).

The public API is the names below; everything else is reachable through its
module (``monitor.decoder``, ``monitor.alerts.store``...) and may change.
"""

from monitor.alerts.model import AlertEvent, Manager, VipFailure
from monitor.alerts.store import AlertStore
from monitor.app import MonitorApp
from monitor.broker import EmbeddedBroker
from monitor.classify import ResponseCodeTable
from monitor.config import Settings, load_settings
from monitor.decoder import DecodedBatch, Rejection, decode_batch
from monitor.events import TransactionEvent
from monitor.metrics import PipelineMetrics
from monitor.pipeline import BatchProcessor
from monitor.policy import AlertPolicy
from monitor.registry import RegistryLoader, VipRegistry

__version__ = "0.1.0"

__all__ = [
    "AlertEvent",
    "AlertPolicy",
    "AlertStore",
    "BatchProcessor",
    "DecodedBatch",
    "EmbeddedBroker",
    "Manager",
    "MonitorApp",
    "PipelineMetrics",
    "RegistryLoader",
    "Rejection",
    "ResponseCodeTable",
    "Settings",
    "TransactionEvent",
    "VipFailure",
    "VipRegistry",
    "__version__",
    "decode_batch",
    "load_settings",
]
