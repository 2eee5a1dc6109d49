"""Worker counts are cached: a metrics scrape waits for Celery's `inspect` at most once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentguild._platform_settings import DatabaseSettings, QueueSettings
from agentguild.runtime._worker_census import WorkerCensus
from agentguild.runtime.celery_app import CeleryQueue
from agentguild.store.db import Database

TTL_S = 15.0
GATE_TIMEOUT_S = 30.0
"""Only bounds a broken test: a correct census never makes a query wait for the gate."""


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Inspect:
    """Counts calls; answers `counts`, after the gate opens if one is set."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts
        self.calls = 0
        self.gate: threading.Event | None = None
        self.error: Exception | None = None

    def __call__(self) -> dict[str, int]:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(GATE_TIMEOUT_S)
        if self.error is not None:
            raise self.error
        return dict(self.counts)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def inspect() -> Inspect:
    return Inspect({"default": 2})


@pytest.fixture
async def census(inspect: Inspect, clock: Clock) -> AsyncIterator[WorkerCensus]:
    census = WorkerCensus(inspect, ttl_s=TTL_S, clock=clock)
    yield census
    if inspect.gate is not None:
        inspect.gate.set()
    await census.aclose()


async def test_the_first_call_waits_for_one_inspect(census: WorkerCensus, inspect: Inspect) -> None:
    assert await census.get() == {"default": 2}
    assert inspect.calls == 1


async def test_calls_within_the_ttl_answer_from_the_last_inspect(
    census: WorkerCensus, inspect: Inspect, clock: Clock
) -> None:
    await census.get()
    inspect.counts = {"default": 5}
    clock.now += TTL_S - 1

    assert await census.get() == {"default": 2}
    assert await census.get() == {"default": 2}
    assert inspect.calls == 1


async def test_concurrent_first_calls_share_one_inspect(
    census: WorkerCensus, inspect: Inspect
) -> None:
    results = await asyncio.gather(*(census.get() for _ in range(5)))

    assert results == [{"default": 2}] * 5
    assert inspect.calls == 1


async def test_a_stale_answer_is_returned_at_once_and_refreshed_in_the_background(
    census: WorkerCensus, inspect: Inspect, clock: Clock
) -> None:
    # given counts older than the ttl, and an inspect that now blocks until released
    await census.get()
    clock.now += TTL_S
    inspect.counts = {"default": 7}
    inspect.gate = threading.Event()

    # when metrics are scraped twice while the refresh waits for the workers' answers
    first = await census.get()
    second = await census.get()

    # then both get the last counts at once
    assert first == second == {"default": 2}

    # and once the one refresh is done, calls get the new counts without another inspect
    inspect.gate.set()
    await census.refreshed()
    assert await census.get() == {"default": 7}
    assert inspect.calls == 2


async def test_a_failed_inspect_keeps_the_last_counts_until_the_next_refresh(
    census: WorkerCensus, inspect: Inspect, clock: Clock
) -> None:
    await census.get()
    clock.now += TTL_S
    inspect.error = ConnectionError("broker unreachable")

    await census.get()
    await census.refreshed()
    assert await census.get() == {"default": 2}
    assert inspect.calls == 2

    clock.now += TTL_S
    inspect.error = None
    inspect.counts = {"default": 3}
    await census.get()
    await census.refreshed()
    assert await census.get() == {"default": 3}
    assert inspect.calls == 3


async def test_a_celery_queue_reports_every_queue_from_its_cached_census(
    tmp_path: Path, inspect: Inspect, clock: Clock
) -> None:
    # given a Celery queue whose broker is never reached (its inspect is replaced)
    db = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"))
    settings = QueueSettings(backend="celery", broker_url="redis://127.0.0.1:1/0")
    queue = CeleryQueue(db, settings, clock=clock)
    queue.census.query = inspect

    # when metrics are scraped twice
    first = await queue.workers()
    second = await queue.workers()

    # then one inspect answered both, with every queue counted
    assert first == second == {"default": 2, "research": 0, "code": 0, "analysis": 0}
    assert inspect.calls == 1
    await queue.aclose()
