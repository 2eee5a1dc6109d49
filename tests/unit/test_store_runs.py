"""Runs, tool calls and usage (including the batched usage writer)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from test_store_support import SqliteBackend, new_tenant

from agentguild._aio import poll_until
from agentguild.security.principal import Principal
from agentguild.store import Database, NotFoundError, NotRunOwnerError, UsageWriter
from agentguild.store.models import utcnow
from agentguild.types import Message, ToolCall


async def _run(db: Database, principal: Principal, status: str = "queued") -> tuple[str, str]:
    async with db.repos(principal) as repos:
        conversation = await repos.conversations.create("usr_1", None, "")
        run = await repos.runs.create(conversation.id, None, None, "usr_1", "wait", status)
    return conversation.id, run.id


async def _append_fenced(
    db: Database, principal: Principal, conversation_id: str, run_id: str, owner: str
) -> None:
    """A message stored the way a run's recorder does: the transaction ends with the fence."""
    async with db.repos(principal) as repos:
        await repos.messages.append(conversation_id, [Message.user("late")], run_id=run_id)
        await repos.runs.fence(run_id, owner)


class RunsContract:
    async def test_run_lifecycle_sets_timestamps(self, db: Database) -> None:
        principal = await new_tenant(db)
        _, run_id = await _run(db, principal)
        async with db.repos(principal) as repos:
            running = await repos.runs.set_status(run_id, "running")
            failed = await repos.runs.set_status(run_id, "failed", error="boom")
        assert running is not None
        assert running.started_at is not None
        assert running.finished_at is None
        assert failed is not None
        assert (failed.status, failed.error) == ("failed", "boom")
        assert failed.finished_at is not None
        assert failed.finished_at >= running.started_at

    async def test_a_begun_run_is_ahead_of_a_waiting_one_whatever_their_clocks(
        self, db: Database
    ) -> None:
        principal = await new_tenant(db)
        input_ = [{"role": "user", "content": "later"}]
        async with db.repos(principal) as repos:
            conversation = await repos.conversations.create("usr_1", None, "")
            waiting = await repos.runs.create(
                conversation.id, None, None, None, "wait", pending_input=input_
            )
            # began (its input is in the conversation) on an instance whose clock is ahead
            begun = await repos.runs.create(conversation.id, None, None, None, "wait", "running")
            later = await repos.runs.create(
                conversation.id, None, None, None, "wait", pending_input=input_
            )
            behind = await repos.runs.ahead_of(waiting)
            behind_later = await repos.runs.ahead_of(later)
            taken = await repos.runs.take_pending_input(waiting.id)
            after_taking = await repos.runs.ahead_of(later)

        assert [run.id for run in behind] == [begun.id]  # not `later`, created after it
        assert [run.id for run in behind_later] == [waiting.id, begun.id]
        assert taken == input_
        assert [run.id for run in after_taking] == [waiting.id, begun.id]  # waiting began

    async def test_unknown_status_is_rejected(self, db: Database) -> None:
        principal = await new_tenant(db)
        _, run_id = await _run(db, principal)
        async with db.repos(principal) as repos:
            with pytest.raises(ValueError, match="unknown run status"):
                await repos.runs.set_status(run_id, "exploded")

    async def test_creating_a_run_in_a_missing_conversation_raises(self, db: Database) -> None:
        async with db.repos(await new_tenant(db)) as repos:
            with pytest.raises(NotFoundError):
                await repos.runs.create("conv_missing", None, None, None, "wait")

    async def test_add_usage_accumulates(self, db: Database) -> None:
        principal = await new_tenant(db)
        _, run_id = await _run(db, principal)
        async with db.repos(principal) as repos:
            assert await repos.runs.add_usage(run_id, 10, 5)
            assert await repos.runs.add_usage(run_id, 1, 2)
            run = await repos.runs.get(run_id)
        assert run is not None
        assert (run.prompt_tokens, run.completion_tokens) == (11, 7)

    async def test_list_filters_by_conversation_and_status(self, db: Database) -> None:
        principal = await new_tenant(db)
        conversation_id, first = await _run(db, principal)
        _, other = await _run(db, principal, "running")
        async with db.repos(principal) as repos:
            second = (await repos.runs.create(conversation_id, None, None, None, "stream")).id
            in_conversation = await repos.runs.list(conversation_id=conversation_id)
            running = await repos.runs.list(status="running")
            paged = await repos.runs.list(limit=2)
            rest = await repos.runs.list(limit=2, cursor=paged.next_cursor)
        assert [r.id for r in in_conversation.items] == [second, first]
        assert [r.id for r in running.items] == [other]
        assert [r.id for r in paged.items + rest.items] == [second, other, first]

    async def test_interrupted_marks_running_runs_and_their_open_tool_calls(
        self, db: Database
    ) -> None:
        principal = await new_tenant(db)
        other_tenant = await new_tenant(db)
        conversation_id, running = await _run(db, principal, "running")
        _, queued = await _run(db, principal, "queued")
        _, elsewhere = await _run(db, other_tenant, "running")
        async with db.repos(principal) as repos:
            call = await repos.tool_calls.start(running, conversation_id, ToolCall("c", "t", "{}"))
        async with db.repos(principal) as repos:
            assert await repos.runs.mark_interrupted_running() == 1
        async with db.system() as system:
            assert await system.mark_interrupted_runs() == 1  # the other tenant's
        async with db.repos(principal) as repos:
            run = await repos.runs.get(running)
            still_queued = await repos.runs.get(queued)
            calls = await repos.tool_calls.list(running)
        async with db.repos(other_tenant) as repos:
            other = await repos.runs.get(elsewhere)
        assert run is not None
        assert run.status == "interrupted"
        assert run.finished_at is not None
        assert still_queued is not None
        assert still_queued.status == "queued"
        assert other is not None
        assert other.status == "interrupted"
        assert [(c.id, c.status) for c in calls] == [(call.id, "interrupted")]

    async def test_the_fence_admits_the_runs_owner_until_it_is_recovered_or_claimed(
        self, db: Database
    ) -> None:
        # Given a run executed by instance a
        principal = await new_tenant(db)
        conversation_id, claimed = await _run(db, principal, "running")
        _, recovered = await _run(db, principal, "running")
        async with db.repos(principal) as repos:
            for run_id in (claimed, recovered):
                assert await repos.runs.claim(run_id, "a") is not None
            await repos.runs.fence(claimed, "a")  # a still executes it
        # When one run is claimed by b and the other recovered (a was thought dead)
        async with db.repos(principal) as repos:
            await repos.runs.claim(claimed, "b")
            await repos.runs.mark_interrupted_running()
        # Then a's writes to either are refused, and nothing it wrote before the fence lands
        for run_id in (claimed, recovered):
            with pytest.raises(NotRunOwnerError, match="no longer executed by 'a'"):
                await _append_fenced(db, principal, conversation_id, run_id, "a")
        async with db.repos(principal) as repos:
            assert (await repos.messages.list(conversation_id)).items == []
            run = await repos.runs.get(recovered)
        assert run is not None
        assert (run.status, run.owner) == ("interrupted", None)


class ToolCallsContract:
    async def test_tool_calls_are_recorded_with_their_outcome(self, db: Database) -> None:
        principal = await new_tenant(db)
        conversation_id, run_id = await _run(db, principal, "running")
        async with db.repos(principal) as repos:
            ok = await repos.tool_calls.start(run_id, conversation_id, ToolCall("c1", "calc", "{}"))
            bad = await repos.tool_calls.start(run_id, conversation_id, ToolCall("c2", "web", "{}"))
            assert await repos.tool_calls.finish(ok.id, "4", False, 1.5)
            assert await repos.tool_calls.finish(bad.id, "timed out", True, 3000.0)
            calls = await repos.tool_calls.list(run_id)
        assert [(c.call_id, c.status, c.result, c.error) for c in calls] == [
            ("c1", "completed", "4", None),
            ("c2", "failed", "timed out", "timed out"),
        ]
        assert calls[0].finished_at is not None
        assert calls[0].duration_ms == 1.5

    async def test_starting_a_call_for_a_missing_run_raises(self, db: Database) -> None:
        async with db.repos(await new_tenant(db)) as repos:
            with pytest.raises(NotFoundError):
                await repos.tool_calls.start("run_missing", "conv_x", ToolCall("c", "t", "{}"))


async def _recorded(db: Database, principal: Principal, requests: int) -> bool:
    async with db.repos(principal) as repos:
        totals = await repos.usage.summary(utcnow() - timedelta(minutes=1))
    return sum(t.requests for t in totals) == requests


class SlowToReturnSessions:
    """A database whose sessions commit, then wait for `gate` before returning."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.committed = asyncio.Event()
        self.gate = asyncio.Event()

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.db.session() as session:
            yield session
        self.committed.set()
        await self.gate.wait()


class UsageContract:
    async def test_summary_totals_per_model_within_the_period(self, db: Database) -> None:
        principal = await new_tenant(db)
        since = utcnow() - timedelta(seconds=1)
        async with db.repos(principal) as repos:
            await repos.usage.record("usr_1", None, None, "m1", 10, 5, 0.01)
            await repos.usage.record("usr_2", "key_1", None, "m1", 1, 1, 0.0, cached=True)
            await repos.usage.record("usr_1", None, "run_1", "m2", 3, 4)
            totals = await repos.usage.summary(since)
            mine = await repos.usage.summary(since, user_id="usr_1")
            future = await repos.usage.summary(utcnow() + timedelta(hours=1))
        m1, m2 = totals
        assert (m1.model, m1.requests, m1.prompt_tokens, m1.completion_tokens) == ("m1", 2, 11, 6)
        assert (m1.cached_requests, m1.cost_usd, m1.total_tokens) == (1, pytest.approx(0.01), 17)
        assert (m2.model, m2.requests, m2.total_tokens) == ("m2", 1, 7)
        assert [(t.model, t.requests) for t in mine] == [("m1", 1), ("m2", 1)]
        assert future == []

    async def test_writer_batches_records_into_the_database(self, db: Database) -> None:
        principal = await new_tenant(db)
        writer = UsageWriter(db, max_batch=3, flush_interval_s=60)
        await writer.start()
        for _ in range(3):
            writer.record(principal, model="m", prompt_tokens=2, completion_tokens=1)
        # a full batch wakes the writer long before its interval
        assert await poll_until(lambda: _recorded(db, principal, 3), timeout_s=30)
        writer.record(principal, model="m", prompt_tokens=2, completion_tokens=1, cached=True)
        assert writer.pending == 1
        await writer.close()
        async with db.repos(principal) as repos:
            (totals,) = await repos.usage.summary(utcnow() - timedelta(minutes=1))
        assert (totals.requests, totals.prompt_tokens, totals.cached_requests) == (4, 8, 1)

    async def test_closing_while_a_batch_is_written_writes_it_once(self, db: Database) -> None:
        # Given a writer whose background write has committed but not yet returned
        principal = await new_tenant(db)
        slow = SlowToReturnSessions(db)
        writer = UsageWriter(cast(Database, slow), max_batch=3, flush_interval_s=60)
        await writer.start()
        for _ in range(3):
            writer.record(principal, model="m", prompt_tokens=2, completion_tokens=1)
        await slow.committed.wait()
        # When the writer is closed meanwhile
        closing = asyncio.create_task(writer.close())
        await asyncio.sleep(0)  # close() runs up to its first wait
        slow.gate.set()
        await closing
        # Then the batch was written once, not put back and written again
        async with db.repos(principal) as repos:
            (totals,) = await repos.usage.summary(utcnow() - timedelta(minutes=1))
        assert totals.requests == 3

    async def test_writer_keeps_records_when_a_write_fails(self, db: Database) -> None:
        principal = await new_tenant(db)
        writer = UsageWriter(db, max_batch=10, flush_interval_s=60)
        writer.record(principal, model="m", prompt_tokens=1, completion_tokens=1)
        await db.close()
        with pytest.raises(Exception, match="not started"):
            await writer.flush()
        assert writer.pending == 1
        await db.start()
        assert await writer.flush() == 1


class TestRunsOnSqlite(SqliteBackend, RunsContract):
    pass


class TestToolCallsOnSqlite(SqliteBackend, ToolCallsContract):
    pass


class TestUsageOnSqlite(SqliteBackend, UsageContract):
    pass
