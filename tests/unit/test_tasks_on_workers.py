"""Planned tasks on queue workers: queued as `task.execute` jobs, claimed and run by a
worker, resumed by another when their worker dies or shuts down, cancelled from any
instance; and tasks in this process start only if this process still owns them.

The "server" and the "workers" are task services with their own heartbeats and models on
one database; a worker executes a job with its own `JobExecutor`, as a queue worker
process does with each delivery (the heartbeat loops are kept idle; the tests drive them).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from agentguild._platform_settings import DatabaseSettings, QueueSettings
from agentguild.config import ScriptedModelConfig, Settings
from agentguild.llm.base import ChatChunk, ChatRequest, ChatResponse
from agentguild.runtime._job_executor import JobExecutor, Outcome
from agentguild.runtime._task_jobs import TASK_JOB, register_task_jobs, task_job_priority
from agentguild.runtime.agent_factory import AgentFactory
from agentguild.runtime.cancels import LocalCancels
from agentguild.runtime.catalog import AgentCatalog
from agentguild.runtime.instances import InstanceHeartbeat
from agentguild.runtime.queue import InProcessQueue, JobRegistry
from agentguild.runtime.task_service import TaskService
from agentguild.security import Principal, Role
from agentguild.store import Database
from agentguild.store.models import Instance, TaskRecord, utcnow
from agentguild.store.queue_models import QueueJob
from agentguild.tasks import PLANNER_PROMPT, SYNTHESISER_PROMPT, Task
from agentguild.types import Message

IDLE = 3600.0  # heartbeat interval: the loops never beat during a test
WAIT_S = 10  # a safety net for waits that should end at once, not a timing assertion
SETTINGS = Settings(
    models={"m": ScriptedModelConfig(provider="scripted", replies=["unused"])}, default_model="m"
)
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


class TeamModel:
    """One process's model for the whole team: plans `s1` then `s2` (which needs `s1`),
    answers them, and synthesises. `calls` lists what it was asked, in order; while
    `hold` is set, `s2` waits for `release`."""

    def __init__(self, name: str, *, hold: bool = True) -> None:
        self.name = name
        self.hold = hold
        self.calls: list[str] = []
        self.planned: list[str] = []
        self.s2_started = asyncio.Event()
        self.release = asyncio.Event()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        system, prompt = request.messages[0].text, request.messages[-1].text
        if system.startswith(PLANNER_PROMPT[:30]):
            self.calls.append("plan")
            self.planned.append(prompt)
            return ChatResponse(Message.assistant(PLAN))
        if system.startswith(SYNTHESISER_PROMPT[:30]):
            self.calls.append("synthesis")
            facts = "facts by " + prompt.split("facts by ", 1)[1].split()[0]
            return ChatResponse(Message.assistant(f"answer by {self.name} from {facts}"))
        if "Your part (research)" in prompt:
            self.calls.append("s1")
            return ChatResponse(Message.assistant(f"facts by {self.name}"))
        self.calls.append("s2")
        self.s2_started.set()
        if self.hold:
            await self.release.wait()
        return ChatResponse(Message.assistant(f"conclusion by {self.name}"))

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise NotImplementedError


@dataclass
class Process:
    """A server or worker process: heartbeat, task service, model, and (workers) the
    executor its job deliveries go through."""

    name: str
    heartbeat: InstanceHeartbeat
    tasks: TaskService
    model: TeamModel
    executor: JobExecutor | None = None
    running: list[asyncio.Task[Outcome]] = field(default_factory=list)

    def deliver(self, job_id: str) -> asyncio.Task[Outcome]:
        """Execute the job here in the background, as one delivery of it."""
        assert self.executor is not None
        delivery = asyncio.create_task(self.executor.execute(job_id))
        self.running.append(delivery)
        return delivery


@dataclass
class Deployment:
    db: Database
    principal: Principal
    queue: InProcessQueue
    cancels: LocalCancels = field(default_factory=LocalCancels)
    processes: list[Process] = field(default_factory=list)

    async def server(self, *, queue: bool = True, max_running: int = 2) -> Process:
        return await self._start("server", queue=queue, max_running=max_running)

    async def worker(self, name: str, *, hold: bool = True) -> Process:
        process = await self._start(name, hold=hold)
        registry = register_task_jobs(JobRegistry(), process.tasks)
        process.executor = JobExecutor(self.queue.store, registry, QueueSettings(), name)
        return process

    async def _start(
        self, name: str, *, queue: bool = False, hold: bool = True, max_running: int = 2
    ) -> Process:
        model = TeamModel(name, hold=hold)
        factory = AgentFactory(SETTINGS, model_provider=lambda _name: model)
        heartbeat = InstanceHeartbeat(self.db, "server", interval_s=IDLE, stale_after_s=IDLE * 2)
        tasks = TaskService(
            self.db,
            AgentCatalog(self.db, factory),
            factory,
            instance=heartbeat,
            queue=self.queue if queue else None,
            cancels=self.cancels,
            max_running=max_running,
        )
        await heartbeat.start()
        await tasks.listen()
        process = Process(name, heartbeat, tasks, model)
        self.processes.append(process)
        return process

    async def kill(self, process: Process) -> None:
        """The process dies: its heartbeat ages, and its job leases expire."""
        assert process.heartbeat._loop is not None
        process.heartbeat._loop.cancel()
        async with self.db.session() as session:
            await session.execute(
                update(Instance)
                .where(Instance.id == process.heartbeat.id)
                .values(heartbeat_at=utcnow() - timedelta(seconds=IDLE * 3))
            )
            await session.execute(
                update(QueueJob)
                .where(QueueJob.worker == process.name)
                .values(lease_until=utcnow() - timedelta(seconds=1))
            )

    async def job(self, task: Task) -> QueueJob:
        found = await self.queue.store.by_key(f"task:{task.id}")
        assert found is not None
        return found

    async def stored(self, task: Task) -> Task:
        found = await self.processes[0].tasks.get(self.principal, task.id)
        assert found is not None
        return found

    async def owner(self, task: Task) -> str | None:
        async with self.db.session() as session:
            return await session.scalar(select(TaskRecord.owner).where(TaskRecord.id == task.id))


async def _first_worker_on_s2(
    deployment: Deployment,
) -> tuple[Process, Process, Task, QueueJob, asyncio.Task[Outcome]]:
    """A server queues a task; worker "first" takes its job, completes s1 and is working
    on s2 (held there); worker "second" stands by. The workers, the task, its job, and
    first's delivery."""
    server = await deployment.server()
    first = await deployment.worker("first")
    second = await deployment.worker("second", hold=False)
    task = await server.tasks.submit(deployment.principal, "assess it")
    job = await deployment.job(task)
    delivery = first.deliver(job.id)
    await asyncio.wait_for(first.model.s2_started.wait(), WAIT_S)
    return first, second, task, job, delivery


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    db = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'tasks.db'}"))
    await db.start()
    async with db.system() as system:
        tenant = await system.create_tenant("acme")
    principal = Principal(tenant.id, Role.USER, user_id="usr_1")
    queue = InProcessQueue(db, JobRegistry(), QueueSettings(concurrency=1))  # never started
    deployment = Deployment(db, principal, queue)
    yield deployment
    for process in deployment.processes:
        process.model.release.set()
        for delivery in process.running:
            delivery.cancel()
        await asyncio.gather(*process.running, return_exceptions=True)
        await process.tasks.aclose()
        await process.heartbeat.aclose()
    await db.close()


def _subtasks(task: Task) -> list[tuple[str, str, int, str | None]]:
    return [(s.id, s.status, s.attempts, s.result) for s in task.subtasks]


async def test_with_a_queue_a_task_is_stored_queued_as_a_job_and_run_by_a_worker(
    deployment: Deployment,
) -> None:
    # given a server sending tasks to the queue, and a worker
    server = await deployment.server()
    worker = await deployment.worker("worker", hold=False)

    # when a task is submitted
    task = await server.tasks.submit(deployment.principal, "assess it", priority=2)
    job = await deployment.job(task)

    # then it is stored pending and queued as its job, not run by the server
    assert (await deployment.stored(task)).status == "pending"
    assert (job.name, job.status, job.queue, job.priority) == (TASK_JOB, "queued", "default", 7)
    assert job.tenant_id == deployment.principal.tenant_id
    assert job.payload["task_id"] == task.id
    assert job.payload["user_id"] == "usr_1"
    assert not server.tasks.manager.holds(task.id, tenant_id=deployment.principal.tenant_id)

    # and when the worker executes the job, the task completes there
    outcome = await asyncio.wait_for(worker.deliver(job.id), WAIT_S)
    done = await deployment.stored(task)
    assert outcome.kind == "completed"
    assert (done.status, done.result) == ("completed", "answer by worker from facts by worker")
    assert _subtasks(done) == [
        ("s1", "completed", 1, "facts by worker"),
        ("s2", "completed", 1, "conclusion by worker"),
    ]
    assert await deployment.owner(task) == worker.heartbeat.id
    assert worker.model.calls == ["plan", "s1", "s2", "synthesis"]
    assert server.model.calls == []
    finished = await deployment.job(task)
    assert (finished.completions, finished.result) == (1, {"status": "completed"})


@pytest.mark.parametrize(("priority", "level"), [(0, 5), (1, 6), (-1, 4), (1000, 9), (-1000, 0)])
def test_a_tasks_priority_maps_onto_the_job_priorities(priority: int, level: int) -> None:
    assert task_job_priority(priority) == level


async def test_a_task_whose_worker_died_is_resumed_without_repeating_completed_subtasks(
    deployment: Deployment,
) -> None:
    # given a worker that completed s1 and is working on s2
    first, second, task, job, _ = await _first_worker_on_s2(deployment)

    # when that worker dies, and its job is delivered to another worker
    await deployment.kill(first)
    outcome = await asyncio.wait_for(second.deliver(job.id), WAIT_S)

    # then the other worker takes the task over and finishes it from its plan: s1's
    # stored result feeds the synthesis, s1 is not run again
    done = await deployment.stored(task)
    assert outcome.kind == "completed"
    assert (done.status, done.result) == ("completed", "answer by second from facts by first")
    assert _subtasks(done) == [
        ("s1", "completed", 1, "facts by first"),
        ("s2", "completed", 2, "conclusion by second"),
    ]
    assert second.model.calls == ["s2", "synthesis"]
    assert first.model.calls == ["plan", "s1", "s2"]
    assert await deployment.owner(task) == second.heartbeat.id
    assert (await deployment.job(task)).completions == 1


async def test_a_worker_thought_dead_that_wakes_up_stores_nothing_and_leaves_the_job(
    deployment: Deployment,
) -> None:
    # given a worker working on s2, thought dead meanwhile: its job went to another
    # worker, which took the task over and finished it
    first, second, task, job, late = await _first_worker_on_s2(deployment)
    await deployment.kill(first)
    assert (await asyncio.wait_for(second.deliver(job.id), WAIT_S)).kind == "completed"
    done = await deployment.stored(task)

    # when the first worker wakes up and s2 ends there
    first.model.release.set()
    outcome = await asyncio.wait_for(late, WAIT_S)

    # then its save was refused: it stopped there (no synthesis), storing nothing, and
    # left the task and its job as the second worker did
    assert outcome.kind == "released"
    assert (await deployment.stored(task)).to_json() == done.to_json()
    assert done.result == "answer by second from facts by first"
    assert first.model.calls == ["plan", "s1", "s2"]
    finished = await deployment.job(task)
    assert (finished.status, finished.completions) == ("completed", 1)


async def test_a_worker_shutting_down_hands_its_task_back_and_the_next_one_finishes_it(
    deployment: Deployment,
) -> None:
    # given a worker that completed s1 and is working on s2
    first, second, task, job, delivery = await _first_worker_on_s2(deployment)

    # when it shuts down
    await asyncio.wait_for(first.tasks.aclose(), WAIT_S)
    outcome = await asyncio.wait_for(delivery, WAIT_S)

    # then its job is given back uncounted, and the task is pending again, unowned,
    # with s1's result kept
    handed_back = await deployment.stored(task)
    requeued = await deployment.job(task)
    assert outcome.kind == "released"
    assert (requeued.status, requeued.attempts) == ("queued", 0)
    assert handed_back.status == "pending"
    assert await deployment.owner(task) is None
    assert [(s.id, s.status) for s in handed_back.subtasks] == [
        ("s1", "completed"),
        ("s2", "pending"),
    ]

    # and the next worker finishes it without running s1 again
    assert (await asyncio.wait_for(second.deliver(job.id), WAIT_S)).kind == "completed"
    done = await deployment.stored(task)
    assert (done.status, done.result) == ("completed", "answer by second from facts by first")
    assert second.model.calls == ["s2", "synthesis"]
    assert (await deployment.job(task)).completions == 1


async def test_cancelling_a_task_waiting_for_a_worker_marks_it_and_its_job_does_nothing(
    deployment: Deployment,
) -> None:
    server = await deployment.server()
    worker = await deployment.worker("worker", hold=False)
    task = await server.tasks.submit(deployment.principal, "assess it")
    job = await deployment.job(task)

    cancelled = await asyncio.wait_for(server.tasks.cancel(deployment.principal, task.id), WAIT_S)
    outcome = await asyncio.wait_for(worker.deliver(job.id), WAIT_S)

    assert cancelled is not None
    assert (cancelled.status, cancelled.error) == ("cancelled", "cancelled on request")
    assert outcome.kind == "completed"
    assert (await deployment.job(task)).result == {"status": "finished"}
    assert worker.model.calls == []
    assert (await deployment.stored(task)).status == "cancelled"


async def test_cancel_through_the_server_stops_the_task_on_its_worker(
    deployment: Deployment,
) -> None:
    # given a task a live worker is running (s1 completed, s2 under way)
    server = await deployment.server()
    worker = await deployment.worker("worker")
    task = await server.tasks.submit(deployment.principal, "assess it")
    delivery = worker.deliver((await deployment.job(task)).id)
    await asyncio.wait_for(worker.model.s2_started.wait(), WAIT_S)

    # when it is cancelled through the server
    cancelled = await asyncio.wait_for(server.tasks.cancel(deployment.principal, task.id), WAIT_S)

    # then the worker stopped it: the task ended cancelled, and so did its job's handler
    assert cancelled is not None
    assert (cancelled.status, cancelled.error) == ("cancelled", "cancelled on request")
    assert [(s.id, s.status) for s in cancelled.subtasks] == [
        ("s1", "completed"),
        ("s2", "cancelled"),
    ]
    assert (await asyncio.wait_for(delivery, WAIT_S)).kind == "completed"
    assert (await deployment.job(task)).result == {"status": "cancelled"}


async def test_cancelling_a_task_whose_worker_died_marks_it_at_once(
    deployment: Deployment,
) -> None:
    server = await deployment.server()
    worker = await deployment.worker("worker")
    task = await server.tasks.submit(deployment.principal, "assess it")
    worker.deliver((await deployment.job(task)).id)
    await asyncio.wait_for(worker.model.s2_started.wait(), WAIT_S)
    await deployment.kill(worker)

    cancelled = await asyncio.wait_for(server.tasks.cancel(deployment.principal, task.id), WAIT_S)

    assert cancelled is not None
    assert cancelled.status == "cancelled"
    assert [(s.id, s.status) for s in cancelled.subtasks] == [
        ("s1", "completed"),
        ("s2", "cancelled"),
    ]


async def test_with_a_queue_recovery_leaves_tasks_that_have_a_job_to_the_workers(
    deployment: Deployment,
) -> None:
    # given tasks a dead process left: two the queue owns (they have jobs), two not
    server = await deployment.server()
    tenant = deployment.principal.tenant_id
    queued_running = await server.tasks.submit(deployment.principal, "queued, running")
    queued_pending = await server.tasks.submit(deployment.principal, "queued, pending")
    own_running = Task("in-process, running", tenant_id=tenant, status="running")
    own_pending = Task("in-process, pending", tenant_id=tenant)
    for task in (own_running, own_pending):
        await server.tasks.store.save(task)
    async with deployment.db.session() as session:
        await session.execute(
            update(TaskRecord).where(TaskRecord.id == queued_running.id).values(status="running")
        )
        await session.execute(update(TaskRecord).values(owner="dead-host:1:abc"))

    # when the server recovers
    taken = await server.tasks.recover()

    # then the queue's tasks are untouched; the others are failed, or queued as jobs
    assert taken == 1
    assert (await deployment.stored(queued_running)).status == "running"
    assert (await deployment.stored(queued_pending)).status == "pending"
    assert await deployment.owner(queued_running) == "dead-host:1:abc"
    assert (await deployment.stored(own_running)).status == "failed"
    assert (await deployment.stored(own_pending)).status == "pending"
    assert (await deployment.job(own_pending)).status == "queued"
    assert server.model.calls == []


async def test_a_task_taken_over_from_a_process_is_not_run_by_that_process(
    deployment: Deployment,
) -> None:
    # given an in-process server running one task and holding another in its queue
    server = await deployment.server(queue=False, max_running=1)
    tenant = deployment.principal.tenant_id
    busy = await server.tasks.submit(deployment.principal, "the long one")
    await asyncio.wait_for(server.model.s2_started.wait(), WAIT_S)
    waiting = await server.tasks.submit(deployment.principal, "the queued one")

    # when another instance takes the queued task over (this one looked dead to it)
    async with deployment.db.session() as session:
        await session.execute(
            update(TaskRecord).where(TaskRecord.id == waiting.id).values(owner="other:1:abc")
        )
    server.model.release.set()

    # then this server does not run it when its turn comes
    await asyncio.wait_for(server.tasks.manager.wait(busy.id, tenant_id=tenant), WAIT_S)
    seen = await asyncio.wait_for(server.tasks.manager.wait(waiting.id, tenant_id=tenant), WAIT_S)
    assert seen is not None
    assert seen.status == "pending"
    assert await deployment.owner(waiting) == "other:1:abc"
    assert server.model.planned == ["the long one"]
    assert (await deployment.stored(busy)).status == "completed"
