"""The Celery task queue with two real worker processes, on Redis and on RabbitMQ.

Jobs are audited twice: by the side effect each one writes (one line per idempotency key
in a file) and by the `completions` count the queue keeps in the database.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from _celery_workers import Worker
from _postgres import postgres_database
from _queue_support import broker_url_for, celery_settings
from sqlalchemy import func, select

from agentguild._platform_settings import DatabaseSettings, QueueSettings
from agentguild.runtime._background import RUN_JOB, run_job_payload
from agentguild.runtime.celery_app import CeleryQueue
from agentguild.runtime.queue import QUEUES
from agentguild.runtime.queue_metrics import queue_metrics
from agentguild.security import Principal, Role
from agentguild.store.db import Database
from agentguild.store.models import Run
from agentguild.store.queue_models import QueueJob
from agentguild.testing import start_fake_server_process
from agentguild.testing.run_jobs import TOOL_LOG_ENV
from agentguild.types import Message

JOBS = int(os.environ.get("AGENTGUILD_TEST_QUEUE_JOBS", "1000"))
WORKER_READY_S = 60.0
REDIS_BROKER_DB = 14


@pytest.fixture(scope="module")
def database_url(postgres_url: str) -> Iterator[str]:
    """A new PostgreSQL database for this module (dropped afterwards)."""
    with postgres_database(postgres_url, "agentguild_test_queue") as url:
        yield url


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    return broker_url_for(request, REDIS_BROKER_DB)


@pytest.fixture
def queue_settings(broker_url: str) -> Iterator[QueueSettings]:
    """Settings with queue names of their own; the broker queues are deleted afterwards."""
    with celery_settings(broker_url, "agtest", lease_s=10, concurrency=4) as settings:
        yield settings


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(DatabaseSettings(url=database_url))
    await database.start()
    yield database
    await database.close()


@pytest.fixture
def workers(
    queue_settings: QueueSettings, database_url: str, tmp_path: Path
) -> Iterator[list[Worker]]:
    started = [Worker(queue_settings, database_url, tmp_path) for _ in range(2)]
    try:
        for worker in started:
            worker.wait_ready()
        yield started
    finally:
        for worker in started:
            worker.stop()


async def _wait_for(
    db: Database, keys_prefix: str, status: str, count: int, within_s: float
) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        async with db.session() as session:
            done = await session.scalar(
                select(func.count())
                .select_from(QueueJob)
                .where(QueueJob.idempotency_key.startswith(keys_prefix), QueueJob.status == status)
            )
        if done == count:
            return
        await asyncio.sleep(0.2)  # polling the state, bounded by the deadline
    pytest.fail(f"only {done} of {count} jobs reached {status!r} in {within_s} s")


async def test_jobs_across_two_workers_all_complete_exactly_once(
    db: Database, queue_settings: QueueSettings, workers: list[Worker], tmp_path: Path
) -> None:
    # given two workers and a queue of jobs recording their side effects
    audit = tmp_path / "audit.log"
    queue = CeleryQueue(db, queue_settings)
    prefix = f"{queue_settings.queue_prefix}:"
    keys = [f"{prefix}{n}" for n in range(JOBS)]
    names = list(QUEUES)
    semaphore = asyncio.Semaphore(16)

    async def put(n: int, key: str) -> str:
        async with semaphore:
            return await queue.enqueue(
                "testing.record",
                {"path": str(audit), "value": n},
                queue=names[n % len(names)],
                idempotency_key=key,
            )

    ids = await asyncio.gather(*(put(n, key) for n, key in enumerate(keys)))
    # when a few are enqueued again (re-sent by a client that timed out)
    again = [await put(n, keys[n]) for n in range(10)]

    # then every job completes, once, on both workers
    await _wait_for(db, prefix, "completed", JOBS, within_s=120)
    assert again == ids[:10]
    executed = Counter(audit.read_text().splitlines())
    assert executed == Counter(keys)
    async with db.session() as session:
        rows = (
            await session.execute(
                select(QueueJob.completions, QueueJob.worker).where(
                    QueueJob.idempotency_key.startswith(prefix)
                )
            )
        ).all()
    assert {completions for completions, _ in rows} == {1}
    assert len({worker for _, worker in rows}) == 2
    await queue.aclose()


async def test_a_failing_job_is_dead_lettered_after_its_retries_and_can_be_redriven(
    db: Database, queue_settings: QueueSettings, workers: list[Worker]
) -> None:
    # given a job that always fails
    queue = CeleryQueue(db, queue_settings)
    prefix = f"{queue_settings.queue_prefix}:fail"
    job_id = await queue.enqueue("testing.fail", {}, idempotency_key=prefix)

    # then after its retries it is a dead letter with its error
    await _wait_for(db, prefix, "dead", 1, within_s=60)
    view = await queue.status(job_id)
    assert view is not None
    assert view.attempts == queue_settings.max_retries + 1
    letters = [letter for letter in await queue.dead_letters() if letter.job_id == job_id]
    assert len(letters) == 1
    assert "attempt 3 failed" in letters[0].error

    # when it is re-driven, it runs (and fails) its attempts again
    assert await queue.redrive(letters[0].id) == job_id
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        redriven = [letter for letter in await queue.dead_letters() if letter.job_id == job_id]
        if redriven:
            break
        await asyncio.sleep(0.2)  # polling the state, bounded by the deadline
    assert len(redriven) == 1
    assert redriven[0].id != letters[0].id
    await queue.aclose()


@pytest.fixture
def fake_llm() -> Iterator[str]:
    """A fake OpenAI-compatible server: calls the agent's first tool, then answers; every
    reply takes a while, so a worker can be killed between the tool and the answer."""
    with start_fake_server_process(
        mode="tool-loop", latency=1.5, tool_arguments={"note": "charged"}
    ) as url:
        yield url if url.endswith("/v1") else f"{url}/v1"


async def _seed_run(db: Database) -> tuple[Principal, str, str]:
    """A tenant, an agent using `record_execution`, and a queued background run."""
    async with db.system() as system:
        tenant = await system.create_tenant(f"acme-{secrets.token_hex(4)}")
    principal = Principal(tenant.id, Role.DEVELOPER)
    async with db.repos(principal) as repos:
        agent = await repos.agents.create(
            "payer", "", {"model": "fake", "tools": ["record_execution"]}, None
        )
        conversation = await repos.conversations.create(None, agent.id, "t")
        run = await repos.runs.create(conversation.id, agent.id, 1, None, "background")
        await repos.messages.append(conversation.id, [Message.user("pay it")], run_id=run.id)
    return principal, conversation.id, run.id


async def _poll(condition: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.1)  # polling the state, bounded by the deadline
    pytest.fail(f"{what} did not happen within {within_s} s")


async def test_a_run_whose_worker_is_killed_completes_on_the_other_worker(
    db: Database,
    queue_settings: QueueSettings,
    database_url: str,
    fake_llm: str,
    tmp_path: Path,
) -> None:
    # given two run workers (short leases, so a dead worker's run is taken over quickly)
    settings = _run_settings(queue_settings)
    tool_log = tmp_path / "tool.log"
    workers = [_run_worker(settings, database_url, tmp_path, fake_llm) for _ in range(2)]
    try:
        for worker in workers:
            worker.wait_ready()
        principal, conversation_id, run_id = await _seed_run(db)
        queue = CeleryQueue(db, settings)
        job_id = await queue.enqueue(
            RUN_JOB, run_job_payload(principal, run_id), idempotency_key=f"run:{run_id}"
        )

        # when the worker running it is killed after the tool ran, before the answer
        async def tool_ran() -> bool:
            return tool_log.exists() and tool_log.read_text().count("\n") >= 1

        await _poll(tool_ran, 60, "the tool call")
        job = await queue.store.get(job_id)
        assert job is not None
        assert job.worker is not None
        pid = int(job.worker.rsplit(":", 1)[1])
        victim = next(w for w in workers if w.process.pid == pid)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        run = await _run(db, principal, run_id)
        assert run.status == "running"

        # then the run completes on the other worker
        async def completed() -> bool:
            return (await _run(db, principal, run_id)).status == "completed"

        await _poll(completed, 90, "the run's completion")
    finally:
        for worker in workers:
            worker.stop()

    # with the tool run exactly once and each message stored exactly once
    assert tool_log.read_text().count("\n") == 1
    async with db.repos(principal) as repos:
        history = await repos.messages.history(conversation_id)
        calls = await repos.tool_calls.list(run_id)
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
    assert history[2].text == "recorded charged"
    assert "recorded charged" in history[3].text
    assert [c.status for c in calls] == ["completed"]
    view = await queue.status(job_id)
    assert view is not None
    assert view.status == "completed"
    assert view.completions == 1
    await queue.aclose()


async def test_a_run_on_a_stopped_worker_is_requeued_and_completed_by_the_next(
    db: Database,
    queue_settings: QueueSettings,
    database_url: str,
    fake_llm: str,
    tmp_path: Path,
) -> None:
    # given one run worker running a run that has executed its tool
    settings = _run_settings(queue_settings)
    tool_log = tmp_path / "tool.log"
    first = _run_worker(settings, database_url, tmp_path, fake_llm)
    second: Worker | None = None
    try:
        first.wait_ready()
        principal, conversation_id, run_id = await _seed_run(db)
        queue = CeleryQueue(db, settings)
        job_id = await queue.enqueue(
            RUN_JOB, run_job_payload(principal, run_id), idempotency_key=f"run:{run_id}"
        )

        async def tool_ran() -> bool:
            return tool_log.exists() and tool_log.read_text().count("\n") >= 1

        await _poll(tool_ran, 60, "the tool call")

        # when it is stopped gracefully (SIGTERM), and another worker starts later
        first.process.terminate()
        assert first.process.wait(timeout=30) == 0
        run = await _run(db, principal, run_id)
        assert run.status == "interrupted"
        second = _run_worker(settings, database_url, tmp_path, fake_llm)
        second.wait_ready()

        # then the run is completed by the new worker
        async def completed() -> bool:
            return (await _run(db, principal, run_id)).status == "completed"

        await _poll(completed, 60, "the run's completion")
    finally:
        first.stop()
        if second is not None:
            second.stop()

    assert tool_log.read_text().count("\n") == 1
    async with db.repos(principal) as repos:
        history = await repos.messages.history(conversation_id)
        usage = await repos.usage.summary(datetime.now(UTC) - timedelta(hours=1))
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
    assert sum(total.total_tokens for total in usage) > 0  # the workers recorded usage
    view = await queue.status(job_id)
    assert view is not None
    assert view.status == "completed"
    assert view.completions == 1
    await queue.aclose()


def _run_settings(queue_settings: QueueSettings) -> QueueSettings:
    return queue_settings.model_copy(update={"lease_s": 3.0, "visibility_timeout_s": 5})


def _run_worker(settings: QueueSettings, database_url: str, home: Path, llm_url: str) -> Worker:
    """A worker running background runs on the fake LLM, with `record_execution`."""
    config = home / "agentguild.yaml"
    models = {"fake": {"provider": "openai", "model": "fake", "base_url": llm_url}}
    config.write_text(json.dumps({"models": models, "default_model": "fake"}))
    return Worker(
        settings,
        database_url,
        home,
        jobs="agentguild.testing.run_jobs:jobs",
        extra_env={TOOL_LOG_ENV: str(home / "tool.log")},
        extra_args=("--config", str(config)),
    )


async def _run(db: Database, principal: Principal, run_id: str) -> Run:
    async with db.repos(principal) as repos:
        run = await repos.runs.get(run_id)
    assert run is not None
    return run


def _unreachable(broker_url: str) -> str:
    """The same broker URL on a port nothing listens on."""
    scheme, rest = broker_url.split("://", 1)
    credentials, _, location = rest.rpartition("@")
    path = location.split("/", 1)[1] if "/" in location else ""
    host = f"{credentials}@127.0.0.1:1" if credentials else "127.0.0.1:1"
    return f"{scheme}://{host}/{path}"


async def test_jobs_whose_send_failed_are_sent_by_a_sweeper_and_complete_once(
    db: Database, queue_settings: QueueSettings, workers: list[Worker], tmp_path: Path
) -> None:
    # given jobs stored while the broker was unreachable, and jobs whose sender died
    audit = tmp_path / "audit.log"
    prefix = f"{queue_settings.queue_prefix}:unsent:"
    offline = CeleryQueue(
        db,
        queue_settings.model_copy(
            update={"broker_url": _unreachable(str(queue_settings.broker_url))}
        ),
    )
    failed = [
        await offline.enqueue(
            "testing.record", {"path": str(audit), "value": n}, idempotency_key=f"{prefix}{n}"
        )
        for n in range(3)
    ]
    assert offline.send_failures == 3
    assert b"agentguild_queue_send_failures_total 3.0" in await queue_metrics(offline)
    await offline.aclose()
    orphaned = [
        (
            await offline.store.create(
                "testing.record",
                {"path": str(audit), "value": n},
                queue="research",
                priority=4,
                idempotency_key=f"{prefix}{n}",
            )
        )[0].id
        for n in range(3, 5)
    ]
    for job_id in failed + orphaned:
        job = await offline.store.get(job_id)
        assert job is not None
        assert (job.status, job.sent_at) == ("queued", None)

    # when two servers' sweepers run against the healthy broker
    settings = queue_settings.model_copy(update={"resend_after_s": 0.5, "sweep_interval_s": 0.2})
    sweepers = [CeleryQueue(db, settings) for _ in range(2)]
    for queue in sweepers:
        await queue.start()
    try:
        await _wait_for(db, prefix, "completed", 5, within_s=60)
    finally:
        for queue in sweepers:
            await queue.aclose()

    # then each job ran exactly once, and its send is recorded
    assert Counter(audit.read_text().splitlines()) == Counter(f"{prefix}{n}" for n in range(5))
    for job_id in failed + orphaned:
        job = await sweepers[0].store.get(job_id)
        assert job is not None
        assert job.completions == 1
        assert job.sent_at is not None


async def test_high_priority_jobs_run_before_low_priority_ones(
    db: Database, queue_settings: QueueSettings, database_url: str, tmp_path: Path
) -> None:
    # given low (1) and high (8) priority jobs, alternating, queued while no worker runs
    settings = queue_settings.model_copy(update={"concurrency": 1})
    queue = CeleryQueue(db, settings)
    audit = tmp_path / "order.log"
    prefix = f"{settings.queue_prefix}:priority:"
    for n in range(10):
        for level, priority in (("low", 1), ("high", 8)):
            await queue.enqueue(
                "testing.record",
                {"path": str(audit), "value": n},
                priority=priority,
                idempotency_key=f"{prefix}{level}{n}",
            )
    await queue.aclose()

    # when one worker running one job at a time (prefetching one) works through them
    worker = Worker(settings, database_url, tmp_path)
    try:
        worker.wait_ready()
        await _wait_for(db, prefix, "completed", 20, within_s=60)
    finally:
        worker.stop()

    # then every high-priority job ran before every low-priority one
    order = [key.removeprefix(prefix).rstrip("0123456789") for key in audit.read_text().split()]
    assert order == ["high"] * 10 + ["low"] * 10
