"""Fixtures' building blocks shared by the Celery integration tests: a PostgreSQL database
of their own, broker URLs, and queue settings whose broker queues are deleted afterwards."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import pytest
from kombu import Connection
from sqlalchemy.engine import make_url

from agentguild._platform_settings import QueueSettings
from agentguild.runtime.celery_app import broker_queue
from agentguild.runtime.queue import QUEUES


def admin_statement(server_url: str, statement: str) -> None:
    """Run one statement on the PostgreSQL server (CREATE/DROP DATABASE)."""

    async def run() -> None:
        connection = await asyncpg.connect(server_url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


@contextmanager
def postgres_database(postgres_url: str, prefix: str) -> Iterator[str]:
    """A new PostgreSQL database (its asyncpg URL), dropped afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin_statement(postgres_url, f'CREATE DATABASE "{name}"')
    url = make_url(postgres_url).set(drivername="postgresql+asyncpg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        admin_statement(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
