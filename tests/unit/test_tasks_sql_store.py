"""SqlTaskStore: planned tasks and subtasks in the database, tenant by tenant.

Written once as `TaskStoreContract`; SQLite runs it here, PostgreSQL in
tests/integration/test_store_postgres.py.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select
from test_store_support import SqliteBackend, new_tenant

from agentguild import Assistant, Message
from agentguild.llm import ChatRequest, ChatResponse, ScriptedModel
from agentguild.store import ConflictError, Database, NotTaskOwnerError, SqlTaskStore
from agentguild.store.models import Instance, TaskRecord
from agentguild.tasks import Mark, PlannedTeam, Subtask, Task, TaskStore
from agentguild.types import JSONObject, Usage

T0 = 1_700_000_000.0  # times with exact binary fractions survive the round trip exactly


def a_task(tenant_id: str, **fields: object) -> Task:
    """A task midway: one subtask done, one running, one waiting for both."""
    task = Task(
        "Compare Python and Go",
        tenant_id=tenant_id,
        agent_id="agt_1",
        priority=3,
        timeout_s=60.0,
        status="running",
        created_at=T0,
        started_at=T0 + 0.5,
        subtasks=[
            Subtask(
                "facts",
                "find facts",
                "research",
                status="completed",
                specialist="researcher",
                result="Go compiles",
                attempts=1,
                started_at=T0 + 1,
                finished_at=T0 + 2.25,
                usage=Usage(10, 5),
            ),
            Subtask("code", "write code", "code", status="running", attempts=2, started_at=T0 + 1),
            Subtask("verdict", "conclude", "analysis", depends_on=("facts", "code")),
        ],
        timeline=[Mark("facts", "start", T0 + 1), Mark("code", "start", T0 + 1)],
        usage=Usage(12, 7),
    )
    for name, value in fields.items():
        setattr(task, name, value)
    return task


def assert_same(stored: object, expected: object) -> None:
    """Equal, but for times: the database keeps them to the microsecond."""
    if isinstance(expected, float):
        assert stored == pytest.approx(expected, abs=2e-6)
    elif isinstance(expected, dict):
        assert isinstance(stored, dict)
        assert stored.keys() == expected.keys()
        for key, value in expected.items():
            assert_same(stored[key], value)
    elif isinstance(expected, list):
        assert isinstance(stored, list)
        assert len(stored) == len(expected)
        for got, want in zip(stored, expected, strict=True):
            assert_same(got, want)
    else:
        assert stored == expected


class Specialist:
    """Answers a subtask once `parties` subtasks are being answered at the same time."""

    name = "specialist"

    def __init__(self, parties: int) -> None:
        self.barrier = asyncio.Barrier(parties)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        await self.barrier.wait()
        part = next(line for line in request.messages[-1].text.splitlines() if "part" in line)
        return ChatResponse(Message.assistant(f"done: {part}"))

    def stream(self, request: ChatRequest) -> object:
        raise NotImplementedError


class TaskStoreContract:
    async def test_a_saved_task_reads_back_with_its_subtasks_and_timeline(
        self, db: Database
    ) -> None:
        tenant = (await new_tenant(db)).tenant_id
        store = SqlTaskStore(db)
        task = a_task(tenant)

        await store.save(task)
        stored = await store.get(task.id, tenant_id=tenant)

        assert isinstance(store, TaskStore)
        assert stored is not None
        assert stored.to_json() == task.to_json()

    async def test_saving_again_replaces_the_task_and_its_subtasks(self, db: Database) -> None:
        tenant = (await new_tenant(db)).tenant_id
        store = SqlTaskStore(db)
        task = a_task(tenant)
        await store.save(task)

        task.subtasks = task.subtasks[:1]
        task.status, task.result, task.finished_at = "completed", "Go, mostly", T0 + 9
        await store.save(task)
        stored = await store.get(task.id, tenant_id=tenant)

        assert stored is not None
        assert [s.id for s in stored.subtasks] == ["facts"]
        assert (stored.status, stored.result, stored.finished_at) == (
            "completed",
            "Go, mostly",
            T0 + 9,
        )

    async def test_saving_a_subtask_changes_it_and_the_timeline_only(self, db: Database) -> None:
        tenant = (await new_tenant(db)).tenant_id
        store = SqlTaskStore(db)
        task = a_task(tenant)
        await store.save(task)

        code = task.subtask("code")
        code.status, code.result, code.finished_at = "completed", "print(1)", T0 + 3
        task.timeline.append(Mark("code", "end", T0 + 3))
        task.result = "not saved by save_subtask"
        await store.save_subtask(task, code)
        stored = await store.get(task.id, tenant_id=tenant)

        assert stored is not None
        assert stored.subtask("code").to_json() == code.to_json()
        assert stored.timeline == task.timeline
        assert stored.result is None
        assert [s.id for s in stored.subtasks] == ["facts", "code", "verdict"]

    async def test_saving_a_subtask_of_an_unsaved_task_stores_the_whole_task(
        self, db: Database
    ) -> None:
        tenant = (await new_tenant(db)).tenant_id
        store = SqlTaskStore(db)
        task = a_task(tenant)

        await store.save_subtask(task, task.subtasks[0])
        stored = await store.get(task.id, tenant_id=tenant)

        assert stored is not None
        assert stored.to_json() == task.to_json()

    async def test_saving_a_subtask_the_store_has_not_seen_adds_it(self, db: Database) -> None:
        tenant = (await new_tenant(db)).tenant_id
        store = SqlTaskStore(db)
        task = a_task(tenant)
        await store.save(task)

        task.subtasks.append(Subtask("extra", "one more", "research"))
        await store.save_subtask(task, task.subtasks[-1])
        stored = await store.get(task.id, tenant_id=tenant)

        assert stored is not None
        assert [s.id for s in stored.subtasks] == ["facts", "code", "verdict", "extra"]

    async def test_listing_is_newest_first_filtered_by_status_and_paginated(
        self, db: Database
    ) -> None:
        tenant = (await new_tenant(db)).tenant_id
        store = SqlTaskStore(db)
        tasks = [
            a_task(tenant, id=f"task_{i}", created_at=T0 + i, status=status)
            for i, status in enumerate(["completed", "failed", "completed", "running"])
        ]
        for task in tasks:
            await store.save(task)

        everything = await store.list_tasks(tenant_id=tenant)
        completed = await store.list_tasks(tenant_id=tenant, status="completed")
        first = await store.page(tenant_id=tenant, limit=3)
        rest = await store.page(tenant_id=tenant, limit=3, cursor=first.next_cursor)

        assert [t.id for t in everything] == ["task_3", "task_2", "task_1", "task_0"]
        assert [len(t.subtasks) for t in everything] == [3, 3, 3, 3]
        assert [t.id for t in completed] == ["task_2", "task_0"]
        assert [t.id for t in first.items + rest.items] == [t.id for t in everything]
        assert rest.next_cursor is None
        assert all(t.subtasks == [] for t in first.items)  # pages leave subtasks out

    async def test_another_tenants_tasks_are_invisible_and_cannot_be_overwritten(
        self, db: Database
    ) -> None:
        mine, theirs = (await new_tenant(db)).tenant_id, (await new_tenant(db)).tenant_id
        store = SqlTaskStore(db)
        task = a_task(mine)
        await store.save(task)

        assert await store.get(task.id, tenant_id=theirs) is None
        assert await store.list_tasks(tenant_id=theirs) == []
        with pytest.raises(ConflictError):
            await store.save(a_task(theirs, id=task.id, input="hijack"))
        stored = await store.get(task.id, tenant_id=mine)
        assert stored is not None
        assert stored.input == task.input

    async def test_text_with_nul_characters_is_stored_without_them(self, db: Database) -> None:
        tenant = (await new_tenant(db)).tenant_id
        store = SqlTaskStore(db)
        task = a_task(tenant, result="a\x00b")

        await store.save(task)
        stored = await store.get(task.id, tenant_id=tenant)

        assert stored is not None
        assert stored.result == "ab"

    async def test_a_planned_team_persists_parallel_subtasks_as_they_finish(
        self, db: Database
    ) -> None:
        tenant = (await new_tenant(db)).tenant_id
        store = SqlTaskStore(db)
        plan = {"subtasks": [{"id": c, "title": f"about {c}", "category": c} for c in "abc"]}
        specialist = Assistant(Specialist(parties=3), name="worker")  # type: ignore[arg-type]
        team = PlannedTeam(
            ScriptedModel([json.dumps(plan)]),
            {"a": specialist, "b": specialist, "c": specialist},
            store=store,
        )
        task = Task("three things", tenant_id=tenant)

        result = await asyncio.wait_for(team.result(task=task), 30)
        stored = await store.get(task.id, tenant_id=tenant)

        assert result.stop_reason == "completed"
        assert stored is not None
        assert stored.status == "completed"
        assert [(s.id, s.status, s.specialist) for s in stored.subtasks] == [
            ("a", "completed", "worker"),
            ("b", "completed", "worker"),
            ("c", "completed", "worker"),
        ]
        assert [s.result for s in stored.subtasks] == [
            f"done: Your part ({c}): about {c}" for c in "abc"
        ]
        kinds = [mark.kind for mark in stored.timeline]
        assert kinds == ["start"] * 3 + ["end"] * 3  # all three ran at once
        assert_same(stored.to_json(), task.to_json())

    async def test_a_tasks_owner_is_set_when_first_stored_and_kept_by_its_saves(
        self, db: Database
    ) -> None:
        tenant = (await new_tenant(db)).tenant_id
        task = a_task(tenant)
        unsaved = a_task(tenant, id="task_unsaved")
        first, second = SqlTaskStore(db, owner="first"), SqlTaskStore(db, owner="second")

        await first.save(task)
        task.status = "completed"
        await first.save(task)
        await first.save_subtask(task, task.subtasks[1])
        await second.save_subtask(unsaved, unsaved.subtasks[0])
        stored = await second.get(task.id, tenant_id=tenant)

        assert stored is not None
        assert stored.status == "completed"
        assert await owner_of(db, task.id) == "first"
        assert await owner_of(db, unsaved.id) == "second"

    async def test_an_owners_saves_are_refused_once_its_task_is_recovered_or_taken_over(
        self, db: Database
    ) -> None:
        # Given three tasks running on `a`, whose saves land while it owns them
        tenant = (await new_tenant(db)).tenant_id
        a, b = SqlTaskStore(db, owner="a"), SqlTaskStore(db, owner="b")
        tasks = [a_task(tenant, id=f"task_{name}") for name in ("failed", "cancelled", "taken")]
        for task in tasks:
            await a.save(task)
            task.subtask("code").attempts = 3
            await a.save_subtask(task, task.subtask("code"))
        _, cancelled, taken = tasks
        # When `a` is thought dead: b takes one over, cancels one and fails the last
        assert await b.take(taken.id, tenant_id=tenant) is not None
        assert await b.cancel_unowned(cancelled.id, tenant_id=tenant) is not None
        assert await b.fail_orphaned("b") == 1
        before = await stored_as_json(b, tasks)
        # Then a's later saves of any of them are refused, and none of them lands
        for task in tasks:
            task.status, task.result = "completed", "a late answer"
            code = task.subtask("code")
            code.status, code.result = "completed", "print(1)"
            task.timeline.append(Mark("code", "end", T0 + 3))
            with pytest.raises(NotTaskOwnerError, match="no longer owned by 'a'"):
                await a.save_subtask(task, code)
            with pytest.raises(NotTaskOwnerError, match="no longer owned by 'a'"):
                await a.save(task)
        assert await stored_as_json(b, tasks) == before
        assert [(t["status"], t["subtasks"][1]["attempts"]) for t in before] == [
            ("failed", 3),
            ("cancelled", 3),
            ("running", 3),
        ]
        assert [await owner_of(db, t.id) for t in tasks] == [None, None, "b"]
        await b.save(taken)  # while its new owner's saves land
        assert (await stored_as_json(b, [taken]))[0]["result"] == "a late answer"

    async def test_orphaned_running_tasks_fail_and_pending_ones_are_taken_once(
        self, db: Database
    ) -> None:
        tenant = (await new_tenant(db)).tenant_id
        dead, mine = SqlTaskStore(db, owner="dead"), SqlTaskStore(db, owner="me")
        running = a_task(tenant, id="task_running")
        pending = a_task(tenant, id="task_pending", status="pending", subtasks=[], timeline=[])
        done = a_task(tenant, id="task_done", status="completed")
        for task in (running, pending, done):
            await dead.save(task)
        own_running = a_task(tenant, id="task_own_running")
        own_pending = a_task(tenant, id="task_own_pending", status="pending", subtasks=[])
        for task in (own_running, own_pending):
            await mine.save(task)

        failed = await mine.fail_orphaned("me")
        taken = await mine.take_orphaned("me")
        again = await mine.take_orphaned("me")
        stored = await mine.get(running.id, tenant_id=tenant)

        assert failed == 1
        assert taken == [(tenant, "task_pending")]
        assert again == []
        assert await owner_of(db, pending.id) == "me"
        assert stored is not None
        assert stored.status == "failed"
        assert stored.error is not None
        assert "server stopped" in stored.error
        assert [s.status for s in stored.subtasks] == ["completed", "cancelled", "cancelled"]
        for task_id, status in [(done.id, "completed"), (own_running.id, "running")]:
            unchanged = await mine.get(task_id, tenant_id=tenant)
            assert unchanged is not None
            assert unchanged.status == status

    async def test_a_live_owners_task_is_kept_until_it_releases_it(self, db: Database) -> None:
        tenant = (await new_tenant(db)).tenant_id
        store = SqlTaskStore(db, owner="me")
        await store.save(a_task(tenant, id="task_1", status="pending", subtasks=[]))
        async with db.session() as session:
            session.add(Instance(id="me", kind="server", host="h", pid=1))
        live = select(Instance.id)

        await store.release(["task_1"], "someone else")  # not theirs: kept
        kept = await store.take_orphaned("other", live)
        await store.release(["task_1"], "me")
        taken = await store.take_orphaned("other", live)

        assert kept == []
        assert taken == [(tenant, "task_1")]


async def stored_as_json(store: SqlTaskStore, tasks: list[Task]) -> list[JSONObject]:
    found = [await store.get(task.id, tenant_id=task.tenant_id) for task in tasks]
    return [task.to_json() for task in found if task is not None]


async def owner_of(db: Database, task_id: str) -> str | None:
    async with db.session() as session:
        owner: str | None = await session.scalar(
            select(TaskRecord.owner).where(TaskRecord.id == task_id)
        )
    return owner


class TestTaskStoreOnSqlite(SqliteBackend, TaskStoreContract):
    pass
