"""The in-process task queue: idempotency, priorities, retries, dead letters, re-drive."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentguild._platform_settings import DatabaseSettings, QueueSettings
from agentguild.runtime.queue import (
    InProcessQueue,
    JobContext,
    JobRegistry,
    PermanentJobError,
    UnknownQueueError,
)
from agentguild.store.db import Database

pytestmark = pytest.mark.asyncio


class Flaky:
    """Fails `failures` times per key, then succeeds; counts every execution."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: Counter[str] = Counter()

    async def __call__(self, ctx: JobContext) -> int:
        key = str(ctx.payload["key"])
        self.calls[key] += 1
        if self.calls[key] <= self.failures:
            raise ConnectionError(f"transient failure {self.calls[key]}")
        return self.calls[key]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"))
    await database.start()
    yield database
    await database.close()


def _settings(**overrides: object) -> QueueSettings:
    values: dict[str, object] = {
        "retry_backoff_s": 0.01,
        "retry_backoff_max_s": 0.05,
        "max_retries": 2,
        "concurrency": 2,
    }
    values.update(overrides)
    return QueueSettings.model_validate(values)


async def _started(db: Database, registry: JobRegistry, **overrides: object) -> InProcessQueue:
    queue = InProcessQueue(db, registry, _settings(**overrides))
    await queue.start()
    return queue


async def test_every_job_completes_exactly_once(db: Database) -> None:
    registry = JobRegistry()
    flaky = Flaky(failures=0)
    registry.handler("count")(flaky)
    queue = await _started(db, registry)
    ids = [
        await queue.enqueue("count", {"key": n}, idempotency_key=f"k{n}", queue="research")
        for n in range(50)
    ]
    await queue.join()
    views = [await queue.status(job_id) for job_id in ids]
    assert all(v is not None and v.status == "completed" and v.completions == 1 for v in views)
    assert set(flaky.calls.values()) == {1}
    await queue.aclose()


async def test_a_known_idempotency_key_queues_nothing(db: Database) -> None:
    registry = JobRegistry()
    flaky = Flaky(failures=0)
    registry.handler("count")(flaky)
    queue = await _started(db, registry)
    first = await queue.enqueue("count", {"key": "a"}, idempotency_key="same")
    await queue.join()
    second = await queue.enqueue("count", {"key": "a"}, idempotency_key="same")
    await queue.join()
    assert first == second
    assert flaky.calls["a"] == 1
    await queue.aclose()


async def test_transient_failures_are_retried_until_success(db: Database) -> None:
    registry = JobRegistry()
    registry.handler("flaky")(Flaky(failures=2))
    queue = await _started(db, registry)
    job_id = await queue.enqueue("flaky", {"key": "x"})
    await queue.join()
    view = await queue.status(job_id)
    assert view is not None
    assert view.status == "completed"
    assert view.attempts == 3
    assert view.result == 3
    await queue.aclose()


async def test_a_job_failing_after_its_retries_is_dead_lettered_and_can_be_redriven(
    db: Database,
) -> None:
    registry = JobRegistry()
    flaky = Flaky(failures=3)  # max_retries=2: three attempts fail
    registry.handler("flaky")(flaky)
    queue = await _started(db, registry)
    job_id = await queue.enqueue("flaky", {"key": "y"})
    await queue.join()
    view = await queue.status(job_id)
    assert view is not None
    assert view.status == "dead"
    assert view.attempts == 3
    [letter] = await queue.dead_letters()
    assert letter.job_id == job_id
    assert "transient failure 3" in letter.error

    assert await queue.redrive(letter.id) == job_id
    await queue.join()
    view = await queue.status(job_id)
    assert view is not None
    assert view.status == "completed"
    assert view.completions == 1
    assert await queue.dead_letters() == []
    assert await queue.redrive(letter.id) is None
    await queue.aclose()


async def test_a_permanent_error_is_dead_lettered_without_retries(db: Database) -> None:
    registry = JobRegistry()

    @registry.handler("broken")
    async def broken(ctx: JobContext) -> None:
        raise PermanentJobError("bad input")

    queue = await _started(db, registry)
    job_id = await queue.enqueue("broken", {})
    await queue.join()
    view = await queue.status(job_id)
    assert view is not None
    assert view.status == "dead"
    assert view.attempts == 1
    await queue.aclose()


async def test_higher_priority_jobs_run_first(db: Database) -> None:
    registry = JobRegistry()
    order: list[int] = []

    @registry.handler("note")
    async def note(ctx: JobContext) -> None:
        order.append(int(ctx.payload["priority"]))

    queue = InProcessQueue(db, registry, _settings(concurrency=1))
    for priority in (1, 9, 5, 0, 7):
        await queue.enqueue("note", {"priority": priority}, priority=priority)
    await queue.start()  # picks up the stored jobs, in priority order
    await queue.join()
    assert order == [9, 7, 5, 1, 0]
    await queue.aclose()


async def test_unknown_queue_is_rejected(db: Database) -> None:
    queue = InProcessQueue(db, JobRegistry(), _settings())
    with pytest.raises(UnknownQueueError, match="queues: default, research"):
        await queue.enqueue("x", {}, queue="nope")


async def test_jobs_left_by_a_stopped_queue_run_at_the_next_start(db: Database) -> None:
    registry = JobRegistry()
    flaky = Flaky(failures=0)
    registry.handler("count")(flaky)
    stopped = InProcessQueue(db, registry, _settings())
    job_id = await stopped.enqueue("count", {"key": "later"})  # never started
    queue = await _started(db, registry)
    await queue.join()
    view = await queue.status(job_id)
    assert view is not None
    assert view.status == "completed"
    assert flaky.calls["later"] == 1
    await queue.aclose()
