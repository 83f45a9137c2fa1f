"""VIP failure alerts: the durable store and outbox, rendering, channels and delivery.

The pipeline calls :meth:`AlertStore.record` (one transaction, committed before the
Kafka offsets); :class:`DeliveryWorker` sends what the outbox holds through the
channels; the jobs of :mod:`monitor.alerts.jobs` claim escalation steps, rate-cap
summaries and daily digests; :func:`export_jsonl` writes the stored alerts out. An
alert's states and history values are :mod:`monitor.alerts.states`.

The shared values (:class:`~monitor.domain.Manager`, :class:`~monitor.domain.VipFailure`,
:class:`~monitor.domain.Alert`...) live in :mod:`monitor.domain`.
"""

import lazy_loader

# Names resolve on first use, so importing one submodule does not load the others.

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "delivery.channels": [
            "Channel",
            "ConsoleChannel",
            "DeliveryError",
            "EmailChannel",
            "JsonLinesChannel",
            "WebhookChannel",
        ],
        "delivery.worker": [
            "DeliveryResult",
            "DeliveryWorker",
            "ResultCallback",
        ],
        "export": [
            "export_jsonl",
        ],
        "messages.alert": [
            "AlertMessage",
            "format_amount",
        ],
        "store": [
            "AlertStore",
            "RecordResult",
            "window_start_for",
        ],
    },
)
