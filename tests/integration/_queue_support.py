"""Fixtures' building blocks shared by the Celery integration tests: broker URLs, and
queue settings whose broker queues are deleted afterwards (their databases: `_postgres`)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kombu import Connection

from agentguild._platform_settings import QueueSettings
from agentguild.runtime.celery_app import broker_queue
from agentguild.runtime.queue import QUEUES


def broker_url_for(request: pytest.FixtureRequest, redis_db: int) -> str:
    """The broker a `params=["redis", "rabbitmq"]` fixture asks for (Redis: database
    `redis_db` of the machine's Redis)."""
    if request.param == "redis":
        redis_url: str = request.getfixturevalue("redis_url")
        return f"{redis_url.rsplit('/', 1)[0]}/{redis_db}"
    return str(request.getfixturevalue("rabbitmq_url"))


@contextmanager
def celery_settings(broker_url: str, prefix: str, **overrides: Any) -> Iterator[QueueSettings]:
    """Celery queue settings with queue names of their own and quick retries (plus
    `overrides`); the broker queues are deleted afterwards."""
    values: dict[str, Any] = {
        "backend": "celery",
        "broker_url": broker_url,
        "queue_prefix": f"{prefix}-{secrets.token_hex(4)}",
        "max_retries": 2,
        "retry_backoff_s": 0.05,
        "retry_backoff_max_s": 0.2,
        **overrides,
    }
    settings = QueueSettings(**values)
    try:
        yield settings
    finally:
        with Connection(broker_url) as conn:
            channel = conn.default_channel
            for name in QUEUES:
                try:
                    channel.queue_delete(broker_queue(settings, name))
                except Exception:
                    channel = conn.channel()
