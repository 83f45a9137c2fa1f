"""cardmon: card-transaction health monitor (ISO 8583 outcomes, VIP alerts, terminal health).

The public API is the names below; everything else is reachable through its module
(``monitor.pipeline.decoder``, ``monitor.alerts.store``...) and may change. Names resolve
on first use, so ``import monitor.domain`` loads no Kafka, PostgreSQL or HTTP code.
"""

import os as _os

import lazy_loader

from monitor._version import __version__ as __version__

# polars allocates through jemalloc, which by default keeps freed pages for a long time:
# at 100,000 terminals that is ~100 MiB of peak RSS for nothing. Return them within a
# second (measured in bench/terminals.py: peak 1,048 → 1,016 MiB). Set before polars is
# imported; an operator's own _RJEM_MALLOC_CONF wins.
_os.environ.setdefault("_RJEM_MALLOC_CONF", "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0")

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "alerts.store": ["AlertStore"],
        "app": ["MonitorApp"],
        "config": ["Settings", "load_settings"],
        "domain": ["AlertEvent", "Manager", "TransactionEvent", "VipFailure"],
        "metrics": ["PipelineMetrics"],
        "pipeline.classify": ["ResponseCodeTable"],
        "pipeline.decoder": ["DecodedBatch", "Rejection", "decode_batch"],
        "pipeline.processor": ["BatchProcessor"],
        "pipeline.selection": ["AlertPolicy"],
        "pipeline.vips": ["RegistryLoader", "VipRegistry"],
        "testing.broker": ["EmbeddedBroker"],
    },
)

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
