"""Schema migrations (Alembic), configured in code so they work from an installed package.

`agentguild db upgrade` calls `upgrade(url)`; `Database.start()` calls it when
`auto_migrate` is on. Several instances starting at once are safe on PostgreSQL: the
upgrade holds an advisory lock, so one migrates and the others find the schema current.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

T = TypeVar("T")

# Alembic keeps its running context in module globals, so one process runs one migration
# at a time; across processes, the PostgreSQL advisory lock in env.py takes over.
_ALEMBIC_LOCK = threading.Lock()

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def async_url(url: str) -> str:
    """`url` with the async driver filled in: `postgresql://...` -> `postgresql+asyncpg://...`,
    `sqlite:///x.db` -> `sqlite+aiosqlite:///x.db`; other URLs unchanged."""
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        return url
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic configuration for our migrations, by URL or on an open connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal '%' in a password must be doubled.
        config.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply every pending migration to the database at `url` (an async SQLAlchemy URL).

    Synchronous, and runs its own event loop: call it from a CLI or through
    `asyncio.to_thread`, never directly inside a running loop.
    """
    with _ALEMBIC_LOCK:
        command.upgrade(alembic_config(url), revision)


def run_upgrade_on_connection(connection: Connection, revision: str = "head") -> None:
    """Apply pending migrations on an already open (sync-facing) connection."""
    with _ALEMBIC_LOCK:
        command.upgrade(alembic_config(connection=connection), revision)


def head_revision() -> str:
    """The newest revision this version of agentguild ships."""
    with _ALEMBIC_LOCK:
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships a revision
        raise RuntimeError("no migrations found")
    return head


def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at (None: never migrated). Synchronous."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    return _on_connection(url, read)


def schema_diff(url: str) -> list[Any]:
    """Differences between the database's schema and the models (`alembic check`).

    Empty when the migrations and `models.py` agree; anything else means a migration is
    missing. Synchronous, like `upgrade`.
    """
    from .models import Base

    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    with _ALEMBIC_LOCK:
        return _on_connection(url, compare)


def _on_connection(url: str, work: Callable[[Connection], T]) -> T:
    async def main() -> T:
        engine = create_async_engine(async_url(url), poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(work)
        finally:
            await engine.dispose()

    return asyncio.run(main())
