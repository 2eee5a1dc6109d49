"""Unsent jobs: which jobs wait for a send, and how sweepers claim and send them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Select, Update
from sqlalchemy.ext.asyncio import AsyncSession

from agentguild._platform_settings import DatabaseSettings, QueueSettings
from agentguild.runtime._job_store import JobStore
from agentguild.runtime._job_sweeper import UnsentSweeper
from agentguild.store.db import Database
from agentguild.store.models import utcnow
from agentguild.store.queue_models import QueueJob

GRACE_S = 60.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    database = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"))
    await database.start()
    yield JobStore(database)
    await database.close()


async def _jobs(store: JobStore, count: int) -> list[str]:
    created = [
        await store.create("noop", {}, queue="default", priority=5, idempotency_key=f"k{n}")
        for n in range(count)
    ]
    return [job.id for job, _ in created]


def _later(periods: int = 1) -> datetime:
    """A time this many grace periods from now."""
    return utcnow() + timedelta(seconds=periods * 1.5 * GRACE_S)


async def _claimed(store: JobStore, at: datetime | None = None) -> set[str]:
    return {job.id for job in await store.claim_unsent(GRACE_S, now=at or _later())}


Step = tuple[asyncio.Event | None, asyncio.Event | None]
"""Wait for the first (if any) before a statement; set the second (if any) after it."""


class _Stepped:
    """A database whose sessions step through statements by kind (`Select`, `Update`),
    to interleave two claims."""

    def __init__(self, db: Database, steps: dict[type[Any], Step]) -> None:
        self.db, self.steps = db, steps

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[_SteppedSession]:
        async with self.db.session() as session:
            yield _SteppedSession(session, self.steps)


class _SteppedSession:
    def __init__(self, session: AsyncSession, steps: dict[type[Any], Step]) -> None:
        self._session, self._steps = session, steps

    async def execute(self, statement: Any) -> Any:
        return await self._step(self._session.execute, statement)

    async def scalars(self, statement: Any) -> Any:
        return await self._step(self._session.scalars, statement)

    def expunge_all(self) -> None:
        self._session.expunge_all()

    async def _step(self, run: Callable[[Any], Awaitable[Any]], statement: Any) -> Any:
        before, after = next(
            (step for kind, step in self._steps.items() if isinstance(statement, kind)),
            (None, None),
        )
        if before is not None:
            await before.wait()
        result = await run(statement)
        if after is not None:
            after.set()
        return result


async def test_of_two_sweepers_claiming_at_once_each_job_goes_to_one(store: JobStore) -> None:
    # given unsent jobs, and two sweepers that both read them before either claims them
    ids = await _jobs(store, 5)
    b_read, a_claimed = asyncio.Event(), asyncio.Event()
    a_steps: dict[type[Any], Step] = {Update: (b_read, a_claimed)}
    b_steps: dict[type[Any], Step] = {Select: (None, b_read), Update: (a_claimed, None)}
    a = JobStore(_Stepped(store.db, a_steps))  # type: ignore[arg-type]
    b = JobStore(_Stepped(store.db, b_steps))  # type: ignore[arg-type]

    # when both claim them
    first, second = await asyncio.gather(_claimed(a), _claimed(b))

    # then every job is claimed, by exactly one of them
    assert first == set(ids)
    assert second == set()


async def test_a_claimed_job_is_not_claimed_again_within_the_grace_period(
    store: JobStore,
) -> None:
    ids = await _jobs(store, 3)
    assert await _claimed(store) == set(ids)

    assert await _claimed(store) == set()


async def test_a_claimed_job_never_sent_is_claimed_again_after_the_grace_period(
    store: JobStore,
) -> None:
    # given a job claimed by a sweeper that died before sending it
    (job_id,) = await _jobs(store, 1)
    assert await _claimed(store, _later(1)) == {job_id}

    # when the grace period has passed, another sweeper claims it
    assert await _claimed(store, _later(2)) == {job_id}


async def test_a_job_recorded_as_sent_is_not_claimed(store: JobStore) -> None:
    sent, unsent = await _jobs(store, 2)
    await store.mark_sent(sent, utcnow())

    assert await _claimed(store) == {unsent}


async def test_a_recent_unsent_job_is_left_to_its_sender(store: JobStore) -> None:
    await _jobs(store, 1)

    assert await _claimed(store, utcnow()) == set()


async def test_a_job_released_for_a_retry_waits_for_a_send_again(store: JobStore) -> None:
    # given a sent job that a worker ran and gave back
    (job_id,) = await _jobs(store, 1)
    await store.mark_sent(job_id, utcnow())
    await store.claim(job_id, "w1", lease_s=60)
    await store.release(job_id, "w1", "ConnectionError: flaky")

    # then it is unsent
    assert await _claimed(store) == {job_id}


async def test_a_job_requeued_with_its_message_needs_no_send(store: JobStore) -> None:
    # given a sent job given back by a worker shutting down (the broker keeps its message)
    (job_id,) = await _jobs(store, 1)
    await store.mark_sent(job_id, utcnow())
    await store.claim(job_id, "w1", lease_s=60)
    await store.release(job_id, "w1", requeued=True)

    assert await _claimed(store) == set()


async def test_a_send_recorded_before_a_racing_release_does_not_hide_it(
    store: JobStore,
) -> None:
    # given a job sent (for a retry) just before a worker released it again
    (job_id,) = await _jobs(store, 1)
    before_release = utcnow()
    await store.claim(job_id, "w1", lease_s=60)
    await store.release(job_id, "w1", "ConnectionError: flaky")

    # when the earlier send is recorded after the release
    await store.mark_sent(job_id, before_release)

    # then the job still waits for its own send
    assert await _claimed(store) == {job_id}


async def test_a_redriven_dead_letter_is_unsent_until_sent(store: JobStore) -> None:
    (job_id,) = await _jobs(store, 1)
    await store.mark_sent(job_id, utcnow())
    letter = await store.bury(job_id, "PermanentJobError: no")
    assert letter is not None
    assert await store.redrive(letter.id) is not None

    assert await _claimed(store) == {job_id}


async def test_the_sweeper_sends_unsent_jobs_highest_priority_first(store: JobStore) -> None:
    low, _ = await store.create("noop", {}, queue="default", priority=1, idempotency_key="low")
    high, _ = await store.create("noop", {}, queue="default", priority=8, idempotency_key="high")
    sent: list[str] = []

    async def send(job: QueueJob) -> bool:
        sent.append(job.id)
        return True

    sweeper = UnsentSweeper(store, send, QueueSettings(resend_after_s=0))

    assert await sweeper.sweep() == 2
    assert sent == [high.id, low.id]


async def test_a_sweep_stops_at_the_first_refused_send(store: JobStore) -> None:
    await _jobs(store, 3)
    attempts: list[str] = []

    async def refuse(job: QueueJob) -> bool:
        attempts.append(job.id)
        return False

    sweeper = UnsentSweeper(store, refuse, QueueSettings(resend_after_s=0))

    assert await sweeper.sweep() == 0
    assert len(attempts) == 1
