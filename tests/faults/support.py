"""What the fault-injection tests share: a VIP registry, a processor, a running consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from monitor.metrics import PipelineMetrics
from monitor.paths import rules_path
from monitor.pipeline.classify import ResponseCodeTable
from monitor.pipeline.consumer import TransactionConsumer
from monitor.pipeline.processor import BatchProcessor
from monitor.pipeline.selection import AlertPolicy
from monitor.pipeline.vips import RegistryLoader
from tests.helpers import write_registry

CUSTOMERS = "customer_id,name,tier,manager_id,card_refs\nC-VIP,Hélène Martin,private,M-1,tok_vip"
MANAGERS = ("manager_id,name,email,phone,webhook_url,backup_manager_id,timezone\n"
            "M-1,Paul Durand,paul@bank.test,,,,Europe/Paris")


def processor(tmp_path: Path, metrics: PipelineMetrics) -> BatchProcessor:
    """The real batch processor with one VIP client (``C-VIP``, card ``tok_vip``) of manager M-1."""
    customers, managers = write_registry(tmp_path / "registry", CUSTOMERS, MANAGERS)
    loader = RegistryLoader(customers, managers)
    loader.load()
    return BatchProcessor(codes=ResponseCodeTable.load(rules_path("response_codes.yaml")),
                          policy=AlertPolicy.load(rules_path("alerting.yaml")),
                          registry=loader, metrics=metrics)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value, 0 when the series does not exist."""
    return registry.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def running(consumer: TransactionConsumer) -> AsyncIterator[asyncio.Task[Any]]:
    """Start ``consumer`` and run it in a task; on exit stop it and wait for it to end."""
    await consumer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield task
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, timeout=30)
        finally:
            await consumer.stop()
