"""TaskManager and InMemoryTaskStore: background tasks by priority; list, get, cancel."""

from __future__ import annotations

import asyncio
import contextvars
import json

import pytest

from agentguild import Assistant, Message
from agentguild.llm import ChatRequest, ChatResponse, ScriptedModel
from agentguild.tasks import InMemoryTaskStore, PlannedTeam, Task, TaskManager
from agentguild.types import Event, TaskUpdate


class Gate:
    """A model answering 'done: <task>' once `open` is set; `waiting` is set on a call."""

    name = "gate"

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.waiting = asyncio.Event()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.waiting.set()
        await self.open.wait()
        return ChatResponse(Message.assistant("done: " + request.messages[-1].text[:40]))

    def stream(self, request: ChatRequest) -> object:
        raise NotImplementedError


def planned(model: object, store: InMemoryTaskStore) -> PlannedTeam:
    # a planner that never gives JSON: every task is one subtask, answered by `model`
    return PlannedTeam(
        ScriptedModel(["no plan"], cycle=True),
        {"research": Assistant(model, name="researcher")},  # type: ignore[arg-type]
        store=store,
    )


@pytest.fixture
async def store() -> InMemoryTaskStore:
    return InMemoryTaskStore()


async def test_a_submitted_task_runs_in_the_background_and_is_stored(
    store: InMemoryTaskStore,
) -> None:
    manager = TaskManager(planned(ScriptedModel(["the answer"], cycle=True), store))
    task = await manager.submit("What is up?", priority=3, timeout_s=30)
    assert task.status == "pending"
    done = await asyncio.wait_for(manager.wait(task.id), 5)
    assert done is not None
    assert (done.status, done.result, done.priority) == ("completed", "the answer", 3)
    assert [s.status for s in done.subtasks] == ["completed"]
    listed = await manager.list_tasks()
    assert [t.id for t in listed] == [task.id]
    assert await manager.list_tasks(status="failed") == []
    await manager.aclose()


async def test_higher_priority_tasks_run_first(store: InMemoryTaskStore) -> None:
    gate = Gate()
    started: list[str] = []

    def record(task: Task, event: Event) -> None:
        if isinstance(event, TaskUpdate) and event.detail == "planning":
            started.append(task.input)

    manager = TaskManager(planned(gate, store), max_running=1, on_event=record)
    first = await manager.submit("first")
    await gate.waiting.wait()  # 'first' holds the only slot
    low = await manager.submit("low", priority=0)
    high = await manager.submit("high", priority=5)
    gate.open.set()
    for task in (first, low, high):
        await asyncio.wait_for(manager.wait(task.id), 5)
    assert started == ["first", "high", "low"]
    await manager.aclose()


async def test_cancel_stops_a_running_task_and_withdraws_a_queued_one(
    store: InMemoryTaskStore,
) -> None:
    gate = Gate()
    manager = TaskManager(planned(gate, store), max_running=1)
    running = await manager.submit("running")
    await gate.waiting.wait()
    queued = await manager.submit("queued")
    assert await manager.cancel(queued.id)
    assert await manager.cancel(running.id)
    stopped = await asyncio.wait_for(manager.wait(running.id), 5)
    withdrawn = await manager.wait(queued.id)
    assert stopped is not None
    assert withdrawn is not None
    assert (stopped.status, withdrawn.status) == ("cancelled", "cancelled")
    assert [s.status for s in stopped.subtasks] == ["cancelled"]
    assert withdrawn.subtasks == []
    assert not await manager.cancel(running.id)  # already finished
    assert not await manager.cancel("no-such-task")
    await manager.aclose()


async def test_tasks_are_scoped_by_tenant(store: InMemoryTaskStore) -> None:
    manager = TaskManager(planned(ScriptedModel(["ok"], cycle=True), store))
    mine = await manager.submit("mine", tenant_id="acme")
    await asyncio.wait_for(manager.wait(mine.id, tenant_id="acme"), 5)
    assert await manager.get(mine.id, tenant_id="other") is None
    assert await manager.list_tasks(tenant_id="other") == []
    assert not await manager.cancel(mine.id, tenant_id="other")
    await manager.aclose()


async def test_the_store_keeps_copies_not_the_callers_objects(store: InMemoryTaskStore) -> None:
    task = Task("x")
    await store.save(task)
    task.status = "failed"
    stored = await store.get(task.id)
    assert stored is not None
    assert stored.status == "pending"


def test_a_task_round_trips_through_json() -> None:
    task = Task("x", priority=2, tenant_id="t")
    restored = Task.from_json(json.loads(json.dumps(task.to_json())))
    assert restored == task


def test_a_manager_needs_a_store() -> None:
    team = PlannedTeam(ScriptedModel([]), {"research": Assistant(ScriptedModel([]))})
    with pytest.raises(ValueError, match="store"):
        TaskManager(team)


async def test_closing_the_manager_cancels_running_tasks_and_stores_them_so(
    store: InMemoryTaskStore,
) -> None:
    gate = Gate()
    manager = TaskManager(planned(gate, store), max_running=1)
    running = await manager.submit("running")
    queued = await manager.submit("queued")
    await gate.waiting.wait()
    await asyncio.wait_for(manager.aclose(), 5)
    stopped = await store.get(running.id)
    waiting = await store.get(queued.id)
    assert stopped is not None
    assert waiting is not None
    assert (stopped.status, stopped.error) == ("cancelled", "the task manager was closed")
    assert waiting.status == "pending"  # accepted work is kept for a later run


async def test_a_task_runs_on_its_own_team_in_the_context_it_was_queued_with(
    store: InMemoryTaskStore,
) -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    seen: list[str] = []

    def record(_task: Task, event: Event) -> None:
        if isinstance(event, TaskUpdate) and event.detail == "planning":
            seen.append(marker.get())

    manager = TaskManager(store=store, on_event=record)
    own_team = planned(ScriptedModel(["from its own team"], cycle=True), InMemoryTaskStore())
    context = contextvars.Context()
    context.run(marker.set, "the submitter's")

    task = await manager.enqueue(Task("x", priority=1), team=own_team, context=context)
    done = await asyncio.wait_for(manager.wait(task.id), 5)

    assert done is not None  # stored in the manager's store, not the team's
    assert (done.status, done.result) == ("completed", "from its own team")
    assert seen == ["the submitter's"]
    assert marker.get() == "unset"
    await manager.aclose()


async def test_a_manager_without_a_team_of_its_own_needs_one_per_task(
    store: InMemoryTaskStore,
) -> None:
    manager = TaskManager(store=store)

    with pytest.raises(ValueError, match="no team"):
        await manager.submit("who runs this?")
    await manager.aclose()


async def test_a_stored_task_that_failed_can_be_queued_again(store: InMemoryTaskStore) -> None:
    task = Task("x", status="failed", error="the server stopped")
    await store.save(task)
    manager = TaskManager(planned(ScriptedModel(["second time lucky"], cycle=True), store))

    await manager.enqueue(task)
    done = await asyncio.wait_for(manager.wait(task.id), 5)

    assert done is not None
    assert (done.status, done.result, done.error) == ("completed", "second time lucky", None)
    await manager.aclose()
