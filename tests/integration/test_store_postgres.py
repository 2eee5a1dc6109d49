"""The store's contracts (tests/unit/test_store_*.py) on a real PostgreSQL.

Each test session creates its own databases (`agentguild_test_<random>`) and drops them
at the end; nothing else on the server is touched.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from agentguild._platform_settings import DatabaseSettings
from agentguild.store import Base, Database, current_revision, head_revision, upgrade

sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))

from _postgres import create_database, database_url, drop_database
from test_store_agents import AgentsContract, ConversationsContract
from test_store_isolation import IsolationContract
from test_store_messages import MessagesContract
from test_store_migrations import MigrationsContract
from test_store_runs import RunsContract, ToolCallsContract, UsageContract
from test_store_users_keys import ApiKeysContract, SystemContract, UsersContract
from test_task_ownership import TaskOwnershipContract
from test_tasks_sql_store import TaskStoreContract


@pytest.fixture(scope="session")
def fresh_database(postgres_url: str) -> Iterator[object]:
    """A factory of new, empty databases; all are dropped when the session ends."""
    created: list[str] = []

    def create() -> str:
        name = create_database(postgres_url, "agentguild_test")
        created.append(name)
        return database_url(postgres_url, name)

    yield create
    for name in created:
        drop_database(postgres_url, name)


@pytest.fixture(scope="session")
def migrated_url(fresh_database: object) -> str:
    url: str = fresh_database()  # type: ignore[operator]
    upgrade(url)
    return url


class PostgresBackend:
    """Mix in to run a contract on PostgreSQL: one migrated database, emptied per test."""

    @pytest.fixture
    def empty_url(self, fresh_database: object) -> str:
        url: str = fresh_database()  # type: ignore[operator]
        return url

    @pytest.fixture
    async def db(self, migrated_url: str) -> AsyncIterator[Database]:
        database = Database(DatabaseSettings(url=migrated_url, auto_migrate=False, pool_size=5))
        await database.start()
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        async with database.session() as session:
            await session.execute(text(f"TRUNCATE {tables} CASCADE"))
        yield database
        await database.close()


class TestAgentsOnPostgres(PostgresBackend, AgentsContract):
    pass


class TestConversationsOnPostgres(PostgresBackend, ConversationsContract):
    pass


class TestMessagesOnPostgres(PostgresBackend, MessagesContract):
    pass


class TestRunsOnPostgres(PostgresBackend, RunsContract):
    pass


class TestToolCallsOnPostgres(PostgresBackend, ToolCallsContract):
    pass


class TestUsageOnPostgres(PostgresBackend, UsageContract):
    pass


class TestUsersOnPostgres(PostgresBackend, UsersContract):
    pass


class TestApiKeysOnPostgres(PostgresBackend, ApiKeysContract):
    pass


class TestSystemOnPostgres(PostgresBackend, SystemContract):
    pass


class TestIsolationOnPostgres(PostgresBackend, IsolationContract):
    pass


class TestTaskStoreOnPostgres(PostgresBackend, TaskStoreContract):
    pass


class TestTaskOwnershipOnPostgres(PostgresBackend, TaskOwnershipContract):
    pass


class TestMigrationsOnPostgres(PostgresBackend, MigrationsContract):
    async def test_instances_upgrading_at_once_take_turns(self, empty_url: str) -> None:
        code = "import sys; from agentguild.store import upgrade; upgrade(sys.argv[1])"
        processes = [
            await asyncio.create_subprocess_exec(sys.executable, "-c", code, empty_url)
            for _ in range(3)
        ]
        codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), 120)
        assert codes == [0, 0, 0]
        assert await asyncio.to_thread(current_revision, empty_url) == head_revision()
