"""cardmon: card-transaction health monitor (ISO 8583 outcomes, VIP alerts, terminal health).

The public API is the names below; everything else is reachable through its
module (``monitor.decoder``, ``monitor.alerts.store``...) and may change.
"""

import os as _os

# polars allocates through jemalloc, which by default keeps freed pages for a long time:
# at 100,000 terminals that is ~100 MiB of peak RSS for nothing. Return them within a
# second (measured in bench/terminals.py: peak 1,048 → 1,016 MiB). Set before polars is
# imported; an operator's own _RJEM_MALLOC_CONF wins.
_os.environ.setdefault("_RJEM_MALLOC_CONF", "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0")

from monitor.alerts.model import AlertEvent, Manager, VipFailure  # noqa: E402
from monitor.alerts.store import AlertStore  # noqa: E402
from monitor.app import MonitorApp  # noqa: E402
from monitor.broker import EmbeddedBroker  # noqa: E402
from monitor.classify import ResponseCodeTable  # noqa: E402
from monitor.config import Settings, load_settings  # noqa: E402
from monitor.decoder import DecodedBatch, Rejection, decode_batch  # noqa: E402
from monitor.events import TransactionEvent  # noqa: E402
from monitor.metrics import PipelineMetrics  # noqa: E402
from monitor.pipeline import BatchProcessor  # noqa: E402
from monitor.policy import AlertPolicy  # noqa: E402
from monitor.registry import RegistryLoader, VipRegistry  # noqa: E402

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
