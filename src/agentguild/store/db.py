"""The database handle: engine, sessions, and entry points to the repositories."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

from agentguild._platform_settings import DatabaseSettings
from agentguild.security.principal import Principal

from .errors import StoreError
from .migrate import async_url, run_upgrade_on_connection, upgrade
from .repositories import SystemRepos, TenantRepos

logger = logging.getLogger(__name__)

_SQLITE_BUSY_TIMEOUT_MS = 30_000


class Database:
    """One database (SQLite file or PostgreSQL) shared by the whole process.

    ```python
    db = Database(settings.database)
    await db.start()                      # connects; migrates if `auto_migrate`
    async with db.repos(principal) as repos:
        agent = await repos.agents.get_by_name("assistant")
    await db.close()
    ```
    """

    def __init__(self, settings: DatabaseSettings) -> None:
        self.settings = settings
        self._url = make_url(async_url(settings.url))
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    @property
    def dialect(self) -> str:
        """The backend: `"sqlite"` or `"postgresql"`."""
        return self._url.get_backend_name()

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine (after `start`)."""
        if self._engine is None:
            raise StoreError("the database is not started; call `await db.start()` first")
        return self._engine

    @property
    def is_memory(self) -> bool:
        """True for an in-memory SQLite database (tests only: it dies with the process)."""
        return self.dialect == "sqlite" and self._url.database in (None, "", ":memory:")

    async def start(self) -> None:
        """Connect, configure SQLite, and apply pending migrations if `auto_migrate`."""
        if self._engine is not None:
            return
        if self.dialect == "sqlite" and not self.is_memory:
            await asyncio.to_thread(_ensure_parent_dir, str(self._url.database))
        engine = create_async_engine(self._url, echo=self.settings.echo, **self._engine_options())
        if self.dialect == "sqlite":
            event.listen(engine.sync_engine, "connect", _configure_sqlite)
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        if self.settings.auto_migrate:
            await self._migrate()

    def _engine_options(self) -> dict[str, Any]:
        if self.is_memory:
            return {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        if self.dialect == "sqlite":
            return {"connect_args": {"timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000}}
        return {
            "pool_size": self.settings.pool_size,
            "max_overflow": self.settings.pool_size,
            "pool_pre_ping": True,
            "pool_recycle": 1800,
        }

    async def _migrate(self) -> None:
        if self.is_memory:
            # A private in-memory database is only reachable through this engine.
            async with self.engine.begin() as conn:
                await conn.run_sync(run_upgrade_on_connection)
        else:
            # Alembic is synchronous: run it off the event loop on its own connection.
            await asyncio.to_thread(upgrade, self._url.render_as_string(hide_password=False))

    async def close(self) -> None:
        """Close every pooled connection; the handle can be started again."""
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = None
        self._sessions = None

    async def ping(self) -> None:
        """Run a trivial query; raises if the database cannot be reached (for `/ready`)."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed when the block ends, rolled back on error."""
        if self._sessions is None:
            raise StoreError("the database is not started; call `await db.start()` first")
        async with self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def repos(self, principal: Principal) -> AsyncIterator[TenantRepos]:
        """Repositories confined to `principal`'s tenant, sharing one transaction."""
        async with self.session() as session:
            yield TenantRepos(session, principal)

    @asynccontextmanager
    async def system(self) -> AsyncIterator[SystemRepos]:
        """Tenant-agnostic operations (bootstrap, login, API-key lookup) in one transaction."""
        async with self.session() as session:
            yield SystemRepos(session)


def _ensure_parent_dir(database: str) -> None:
    Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()
