"""`JobStore` dead letters page by page: newest first, ties on time broken by id, filters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentguild._platform_settings import DatabaseSettings
from agentguild.runtime._job_store import JobStore
from agentguild.store.db import Database
from agentguild.store.errors import InvalidCursorError
from agentguild.store.queue_models import DeadLetter

pytestmark = pytest.mark.asyncio

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    database = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"))
    await database.start()
    yield JobStore(database)
    await database.close()


async def _letters(store: JobStore, *rows: tuple[str, str | None, int, bool]) -> None:
    """Dead letters as (id, tenant, seconds after T0, re-driven)."""
    async with store.db.session() as session:
        for letter_id, tenant_id, seconds, redriven in rows:
            at = T0 + timedelta(seconds=seconds)
            session.add(
                DeadLetter(
                    id=letter_id,
                    job_id=f"job_{letter_id}",
                    name="reports.build",
                    queue="default",
                    tenant_id=tenant_id,
                    error="boom",
                    attempts=1,
                    created_at=at,
                    redriven_at=at if redriven else None,
                )
            )


async def _walk(store: JobStore, limit: int, **filters: object) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await store.dead_letter_page(limit=limit, cursor=cursor, **filters)  # type: ignore[arg-type]
        pages.append([letter.id for letter in page.items])
        cursor = page.next_cursor
        if cursor is None:
            return pages


async def test_pages_walk_newest_first_with_ties_broken_by_id(store: JobStore) -> None:
    await _letters(
        store,
        ("dlq_a", "t1", 1, False),
        ("dlq_b", "t1", 2, False),
        ("dlq_c", "t1", 2, False),
        ("dlq_d", "t1", 3, False),
    )

    by_one = await _walk(store, 1)
    by_three = await _walk(store, 3)

    assert by_one == [["dlq_d"], ["dlq_c"], ["dlq_b"], ["dlq_a"]]
    assert by_three == [["dlq_d", "dlq_c", "dlq_b"], ["dlq_a"]]


async def test_pages_keep_to_one_tenant_and_skip_redriven_letters(store: JobStore) -> None:
    await _letters(
        store,
        ("dlq_1", "t1", 1, False),
        ("dlq_2", "t2", 2, False),
        ("dlq_3", "t1", 3, True),
        ("dlq_4", None, 4, False),
        ("dlq_5", "t1", 5, False),
    )

    pending = await _walk(store, 1, tenant_id="t1")
    everything = await _walk(store, 1, tenant_id="t1", include_redriven=True)
    listed = await store.dead_letters(limit=10, tenant_id="t1")

    assert pending == [["dlq_5"], ["dlq_1"]]
    assert everything == [["dlq_5"], ["dlq_3"], ["dlq_1"]]
    assert [letter.id for letter in listed] == ["dlq_5", "dlq_1"]


@pytest.mark.parametrize(
    "cursor",
    [
        "abc",
        "W10",  # []
        "WyJ5ZXN0ZXJkYXkiLCJ4Il0",  # ["yesterday", "x"]
        "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwieCJd",  # a naive time
        "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiw1XQ",  # a number for the id
    ],
)
async def test_a_malformed_cursor_is_refused(store: JobStore, cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        await store.dead_letter_page(limit=1, cursor=cursor)
