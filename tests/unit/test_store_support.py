"""Shared pieces of the store tests (no tests here).

The store's behaviour is written once, as `*Contract` classes in `test_store_*.py`; each
backend runs them by mixing in its `db` fixture: `SqliteBackend` here (unit tests),
`PostgresBackend` in `tests/integration/test_store_postgres.py`.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentguild._platform_settings import DatabaseSettings
from agentguild.security.principal import Principal, Role
from agentguild.store import Database, upgrade


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


class SqliteBackend:
    """Mix in to run a contract on a fresh SQLite file per test."""

    @pytest.fixture(scope="class")
    @classmethod
    def sqlite_template(cls, tmp_path_factory: pytest.TempPathFactory) -> Path:
        # Migrating once and copying the file keeps each test's fresh database cheap.
        path = tmp_path_factory.mktemp("store-template") / "template.db"
        upgrade(sqlite_url(path))
        return path

    @pytest.fixture
    def empty_url(self, tmp_path: Path) -> str:
        return sqlite_url(tmp_path / "empty.db")

    @pytest.fixture
    async def db(self, sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Database]:
        path = tmp_path / "agentguild.db"
        shutil.copyfile(sqlite_template, path)
        database = Database(DatabaseSettings(url=sqlite_url(path), auto_migrate=False))
        await database.start()
        yield database
        await database.close()


async def new_tenant(db: Database, role: Role = Role.ADMIN) -> Principal:
    """A fresh tenant and a principal of it (user id `usr_test`, not a stored user)."""
    async with db.system() as system:
        tenant = await system.create_tenant(f"tenant-{secrets.token_hex(4)}")
    return Principal(tenant_id=tenant.id, role=role, user_id="usr_test")


AGENT_CONFIG = {"kind": "assistant", "model": "local", "tools": ["calculator"]}
