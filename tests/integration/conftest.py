"""Fixtures for integration tests: real services on this machine, over real connections.

A missing service skips the test with a message naming it — except under `CI=true`, where
it fails: CI must prove the integration, not skip it.
"""

from __future__ import annotations

import os
import socket

import pytest

REDIS_URL = os.environ.get("AGENTGUILD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get(
    "AGENTGUILD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
RABBITMQ_URL = os.environ.get("AGENTGUILD_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")

_START_HINTS = {
    "Redis": 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "RabbitMQ": "rabbitmq-server -detached",
}


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, under CI=true, fail) unless `host:port` accepts TCP connections."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError as exc:
        hint = _START_HINTS[name]
        message = f"{name} is not reachable at {host}:{port} ({exc}); start it: {hint}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the machine's Redis (database 15; tests use their own unique key prefixes)."""
    require_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL


@pytest.fixture(scope="session")
def postgres_url() -> str:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    return RABBITMQ_URL


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)
