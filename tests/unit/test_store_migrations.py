"""Migrations and the database handle: upgrade from empty, no drift, start/close, sessions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select, text
from test_store_support import SqliteBackend, new_tenant, sqlite_url

from agentguild._platform_settings import DatabaseSettings
from agentguild.store import (
    Conversation,
    Database,
    StoreError,
    current_revision,
    head_revision,
    schema_diff,
    upgrade,
)
from agentguild.store.migrate import async_url


class MigrationsContract:
    async def test_upgrade_from_an_empty_database_reaches_head_without_drift(
        self, empty_url: str
    ) -> None:
        assert await asyncio.to_thread(current_revision, empty_url) is None

        await asyncio.to_thread(upgrade, empty_url)
        await asyncio.to_thread(upgrade, empty_url)  # a second upgrade changes nothing

        assert await asyncio.to_thread(current_revision, empty_url) == head_revision()
        assert await asyncio.to_thread(schema_diff, empty_url) == []

    async def test_ping_and_transactions(self, db: Database) -> None:
        await db.ping()
        principal = await new_tenant(db)

        async def fail_after_writing() -> None:
            async with db.repos(principal) as repos:
                await repos.conversations.create("usr_1", None, "doomed")
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await fail_after_writing()
        async with db.session() as session:
            titles = (await session.scalars(select(Conversation.title))).all()
        assert "doomed" not in titles


class TestMigrationsOnSqlite(SqliteBackend, MigrationsContract):
    pass


async def test_start_creates_the_directory_and_migrates(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "agentguild.db"
    db = Database(DatabaseSettings(url=sqlite_url(path)))

    await db.start()
    try:
        async with db.session() as session:
            journal = await session.scalar(text("PRAGMA journal_mode"))
            foreign_keys = await session.scalar(text("PRAGMA foreign_keys"))
            busy_timeout = await session.scalar(text("PRAGMA busy_timeout"))
    finally:
        await db.close()

    assert path.exists()
    assert (db.dialect, journal, foreign_keys, busy_timeout) == ("sqlite", "wal", 1, 30000)
    assert await asyncio.to_thread(current_revision, sqlite_url(path)) == head_revision()


async def test_in_memory_database_is_migrated_on_start() -> None:
    db = Database(DatabaseSettings(url="sqlite+aiosqlite://"))
    await db.start()
    try:
        principal = await new_tenant(db)
        async with db.repos(principal) as repos:
            conversation = await repos.conversations.create("usr_1", None, "hello")
        assert conversation.title == "hello"
    finally:
        await db.close()


async def test_using_a_closed_database_says_how_to_fix_it(tmp_path: Path) -> None:
    db = Database(DatabaseSettings(url=sqlite_url(tmp_path / "x.db"), auto_migrate=False))
    with pytest.raises(StoreError, match="start"):
        await db.ping()
    with pytest.raises(StoreError, match="start"):
        async with db.session():
            pass


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://app:p%40ss@db/agentguild", "postgresql+asyncpg://app:p%40ss@db/agentguild"),
        ("sqlite:///data/ag.db", "sqlite+aiosqlite:///data/ag.db"),
        ("sqlite+aiosqlite:///ag.db", "sqlite+aiosqlite:///ag.db"),
    ],
)
def test_plain_urls_get_the_async_driver(given: str, expected: str) -> None:
    assert async_url(given) == expected
    assert Database(DatabaseSettings(url=given)).dialect == expected.split("+")[0]
