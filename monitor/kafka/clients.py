"""aiokafka clients from the settings: their shared connection options, and the topics they need.

The consumer, the dead-letter producer, the admin client and the raw batch reader
(:func:`monitor.kafka.batches.fetch_batches`) connect with the same options
(:func:`kafka_client_options`: bootstrap servers, client ID, security protocol, SASL
with the password only here, from its ``SecretStr``). :func:`ensure_topics` creates the
event and dead-letter topics where they are missing (the demo, the tests, a first start).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from monitor.config import KafkaSettings

__all__ = ["ensure_topics", "kafka_client_options"]


def kafka_client_options(settings: KafkaSettings) -> dict[str, Any]:
    """aiokafka keyword arguments shared by the consumer, producer and admin client."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password is not None:
            options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


async def ensure_topics(settings: KafkaSettings, *, partitions: int = 3,
                        topics: Sequence[str] | None = None) -> None:
    """Create the event and dead-letter topics if they do not exist yet.

    Raises:
        aiokafka.errors.KafkaError: the broker cannot be reached.
    """
    names = list(topics) if topics is not None else [settings.topic, settings.dead_letter_topic]
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, partitions, 1) for name in names if name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
