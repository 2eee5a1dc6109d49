"""Planned tasks on real `agentguild worker` processes, on Redis and on RabbitMQ.

A server-side `TaskService` with a Celery queue submits and cancels; the workers run the
platform's jobs (`platform_jobs`) on a fake OpenAI-compatible server in this process,
whose team script plans two subtasks (`s2` needs `s1`) and can hold `s2` mid-way, so a
worker can be killed, stopped or asked to cancel after `s1` completed. Cancel requests
travel over Redis (`server.redis_url`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _celery_workers import Worker
from _postgres import postgres_database
from _queue_support import broker_url_for, celery_settings
from sqlalchemy import select

from agentguild._platform_settings import DatabaseSettings, QueueSettings
from agentguild.config import ScriptedModelConfig, Settings
from agentguild.llm.scripted import ScriptedModel
from agentguild.runtime.agent_factory import AgentFactory
from agentguild.runtime.cancels import RedisCancels
from agentguild.runtime.catalog import AgentCatalog
from agentguild.runtime.celery_app import CeleryQueue
from agentguild.runtime.instances import InstanceHeartbeat
from agentguild.runtime.task_service import TaskService
from agentguild.security import Principal, Role
from agentguild.store.db import Database
from agentguild.store.models import TaskRecord
from agentguild.store.queue_models import QueueJob
from agentguild.tasks import PLANNER_PROMPT, SYNTHESISER_PROMPT, Task
from agentguild.testing import FakeLLMServer, Reply

REDIS_BROKER_DB = 13
PLAN = json.dumps(
    {
        "subtasks": [
            {"id": "s1", "title": "collect the facts", "category": "research"},
            {
                "id": "s2",
                "title": "draw the conclusion",
                "category": "analysis",
                "depends_on": ["s1"],
            },
        ]
    }
)


class TeamScript:
    """The fake server's answers for the default team; counts what it was asked. While
    `hold_first_s2` is set, the first request for `s2` is answered only on `release`."""

    def __init__(self, *, hold_first_s2: bool) -> None:
        self.hold_first_s2 = hold_first_s2
        self.asked: Counter[str] = Counter()
        self.s2_started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, request: dict[str, Any]) -> Reply:
        messages = request["messages"]
        system, prompt = str(messages[0]["content"]), str(messages[-1]["content"])
        if system.startswith(PLANNER_PROMPT[:30]):
            self.asked["plan"] += 1
            return Reply(PLAN)
        if system.startswith(SYNTHESISER_PROMPT[:30]):
            self.asked["synthesis"] += 1
            return Reply("answer built on " + prompt.split("## collect the facts\n", 1)[1][:7])
        if "Your part (research)" in prompt:
            self.asked["s1"] += 1
            return Reply("facts 1")
        self.asked["s2"] += 1
        if self.asked["s2"] == 1 and self.hold_first_s2:
            self.s2_started.set()
            await self.release.wait()
        return Reply("conclusion 2")


@pytest.fixture(scope="module")
def database_url(postgres_url: str) -> Iterator[str]:
    """A new PostgreSQL database for this module (dropped afterwards)."""
    with postgres_database(postgres_url, "agentguild_test_tasks") as url:
        yield url


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    return broker_url_for(request, REDIS_BROKER_DB)


@pytest.fixture
def queue_settings(broker_url: str) -> Iterator[QueueSettings]:
    """Short leases (a dead worker's job is taken over quickly), queue names of their
    own (the broker queues are deleted afterwards)."""
    with celery_settings(
        broker_url, "agtasks", lease_s=3, visibility_timeout_s=5, concurrency=2
    ) as settings:
        yield settings


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(DatabaseSettings(url=database_url))
    await database.start()
    yield database
    await database.close()


class Deployment:
    """The server side (a task service sending tasks to the queue) and worker starter."""

    def __init__(
        self, db: Database, settings: QueueSettings, database_url: str, redis_url: str, home: Path
    ) -> None:
        self.db, self.settings, self.database_url = db, settings, database_url
        self.redis_url, self.home = redis_url, home
        self.workers: list[Worker] = []
        self.heartbeat = InstanceHeartbeat(db, "server", interval_s=3600, stale_after_s=7200)
        self.queue = CeleryQueue(db, settings)
        model_settings = Settings(
            models={"m": ScriptedModelConfig(provider="scripted", replies=["unused"])},
            default_model="m",
        )
        factory = AgentFactory(model_settings, model_provider=lambda _n: ScriptedModel([]))
        self.tasks = TaskService(
            db,
            AgentCatalog(db, factory),
            factory,
            instance=self.heartbeat,
            queue=self.queue,
            cancels=RedisCancels(redis_url),
        )

    async def start(self, llm: FakeLLMServer) -> Principal:
        config = self.home / "agentguild.yaml"
        models = {"fake": {"provider": "openai", "model": "fake", "base_url": llm.base_url}}
        config.write_text(json.dumps({"models": models, "default_model": "fake"}))
        await self.heartbeat.start()
        await self.tasks.listen()
        async with self.db.system() as system:
            tenant = await system.create_tenant(f"acme-{secrets.token_hex(4)}")
        return Principal(tenant.id, Role.USER, user_id="usr_1")

    def worker(self) -> Worker:
        """A started `agentguild worker` running the platform's jobs."""
        worker = Worker(
            self.settings,
            self.database_url,
            self.home,
            jobs="agentguild.runtime._run_jobs:platform_jobs",
            extra_env={
                "AGENTGUILD_SERVER__REDIS_URL": self.redis_url,
                "AGENTGUILD_SERVER__HEARTBEAT_INTERVAL_S": "0.5",
            },
            extra_args=("--config", str(self.home / "agentguild.yaml")),
        )
        self.workers.append(worker)
        worker.wait_ready()
        return worker

    async def aclose(self) -> None:
        for worker in self.workers:
            worker.stop()
        await self.tasks.aclose()
        await self.tasks.cancels.aclose()
        await self.heartbeat.aclose()
        await self.queue.aclose()

    async def stored(self, principal: Principal, task: Task) -> Task:
        found = await self.tasks.get(principal, task.id)
        assert found is not None
        return found

    async def job(self, task: Task) -> QueueJob:
        found = await self.queue.store.by_key(f"task:{task.id}")
        assert found is not None
        return found

    async def owner_pid(self, task: Task) -> int:
        async with self.db.session() as session:
            owner = await session.scalar(select(TaskRecord.owner).where(TaskRecord.id == task.id))
        assert owner is not None
        return int(owner.split(":")[1])


@pytest.fixture
async def deployment(
    db: Database,
    queue_settings: QueueSettings,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
) -> AsyncIterator[Deployment]:
    deployment = Deployment(db, queue_settings, database_url, redis_url, tmp_path)
    try:
        yield deployment
    finally:
        await deployment.aclose()


async def _poll(condition: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.2)  # polling the state, bounded by the deadline
    pytest.fail(f"{what} did not happen within {within_s} s")


async def _finished(deployment: Deployment, principal: Principal, task: Task) -> Task:
    async def finished() -> bool:
        return (await deployment.stored(principal, task)).finished

    await _poll(finished, 90, f"the end of task {task.id}")
    return await deployment.stored(principal, task)


async def test_a_task_submitted_in_celery_mode_completes_on_a_worker(
    deployment: Deployment,
) -> None:
    script = TeamScript(hold_first_s2=False)
    async with FakeLLMServer(responder=script) as llm:
        principal = await deployment.start(llm)
        worker = deployment.worker()

        task = await deployment.tasks.submit(principal, "assess it", priority=3)
        done = await _finished(deployment, principal, task)

    assert (done.status, done.result) == ("completed", "answer built on facts 1")
    assert [(s.id, s.status, s.attempts) for s in done.subtasks] == [
        ("s1", "completed", 1),
        ("s2", "completed", 1),
    ]
    assert await deployment.owner_pid(task) == worker.process.pid
    assert script.asked == Counter(plan=1, s1=1, s2=1, synthesis=1)
    job = await deployment.job(task)
    assert (job.status, job.priority, job.completions) == ("completed", 8, 1)


async def test_a_task_whose_worker_is_killed_is_finished_by_another_without_repeating_s1(
    deployment: Deployment,
) -> None:
    script = TeamScript(hold_first_s2=True)
    async with FakeLLMServer(responder=script) as llm:
        principal = await deployment.start(llm)
        workers = [deployment.worker(), deployment.worker()]

        # given a worker that completed s1 and is working on s2
        task = await deployment.tasks.submit(principal, "assess it")
        await asyncio.wait_for(script.s2_started.wait(), 60)
        running = await deployment.stored(principal, task)
        assert [(s.id, s.status) for s in running.subtasks] == [
            ("s1", "completed"),
            ("s2", "running"),
        ]

        # when it is killed
        pid = await deployment.owner_pid(task)
        victim = next(w for w in workers if w.process.pid == pid)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()

        # then the other worker finishes the task
        done = await _finished(deployment, principal, task)
        script.release.set()

    survivor = next(w for w in workers if w is not victim)
    assert (done.status, done.result) == ("completed", "answer built on facts 1")
    assert await deployment.owner_pid(task) == survivor.process.pid
    # s1 ran once: one attempt, one start on the timeline, one request; s2 twice
    assert [(s.id, s.status, s.attempts) for s in done.subtasks] == [
        ("s1", "completed", 1),
        ("s2", "completed", 2),
    ]
    assert [m.kind for m in done.timeline if m.subtask_id == "s1"] == ["start", "end"]
    assert script.asked == Counter(plan=1, s1=1, s2=2, synthesis=1)
    job = await deployment.job(task)
    assert (job.status, job.completions) == ("completed", 1)


async def test_a_task_on_a_stopped_worker_is_handed_back_and_finished_by_the_next(
    deployment: Deployment,
) -> None:
    script = TeamScript(hold_first_s2=True)
    async with FakeLLMServer(responder=script) as llm:
        principal = await deployment.start(llm)
        first = deployment.worker()
        task = await deployment.tasks.submit(principal, "assess it")
        await asyncio.wait_for(script.s2_started.wait(), 60)

        # when the worker running it is stopped gracefully (SIGTERM)
        first.process.terminate()
        assert await asyncio.to_thread(first.process.wait, 30) == 0
        handed_back = await deployment.stored(principal, task)

        # then the task is pending again with s1 kept, and the next worker finishes it
        deployment.worker()
        done = await _finished(deployment, principal, task)
        script.release.set()

    assert handed_back.status == "pending"
    assert [(s.id, s.status) for s in handed_back.subtasks] == [
        ("s1", "completed"),
        ("s2", "pending"),
    ]
    assert (done.status, done.result) == ("completed", "answer built on facts 1")
    assert script.asked == Counter(plan=1, s1=1, s2=2, synthesis=1)
    job = await deployment.job(task)
    assert (job.status, job.completions) == ("completed", 1)


async def test_cancel_through_the_service_stops_the_task_on_its_worker(
    deployment: Deployment,
) -> None:
    script = TeamScript(hold_first_s2=True)
    async with FakeLLMServer(responder=script) as llm:
        principal = await deployment.start(llm)
        deployment.worker()
        task = await deployment.tasks.submit(principal, "assess it")
        await asyncio.wait_for(script.s2_started.wait(), 60)

        cancelled = await deployment.tasks.cancel(principal, task.id)

        async def job_done() -> bool:
            return (await deployment.job(task)).status == "completed"

        await _poll(job_done, 30, "the job's completion")
        script.release.set()

    assert cancelled is not None
    assert (cancelled.status, cancelled.error) == ("cancelled", "cancelled on request")
    assert [(s.id, s.status) for s in cancelled.subtasks] == [
        ("s1", "completed"),
        ("s2", "cancelled"),
    ]
    assert (await deployment.job(task)).result == {"status": "cancelled"}
    assert script.asked == Counter(plan=1, s1=1, s2=1)
