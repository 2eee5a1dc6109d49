"""The runner: runs persist every step as it happens, follow/resume, cancel, fail, recover."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentguild._platform_settings import DatabaseSettings
from agentguild.config import OpenAIModelConfig, Settings
from agentguild.errors import ServerError
from agentguild.llm.base import ChatChunk, ChatModel, ChatRequest, ChatResponse
from agentguild.llm.scripted import ScriptedModel, tool_call
from agentguild.runtime.agent_factory import AgentFactory
from agentguild.runtime.catalog import AgentCatalog
from agentguild.runtime.limits import QuotaExceededError
from agentguild.runtime.run_registry import RunHandle
from agentguild.runtime.runner import RunLimitError, RunLimits, Runner
from agentguild.security import Principal, Role
from agentguild.store import Database, UsageWriter
from agentguild.types import Message


class BlockingModel:
    """A model whose calls never answer until cancelled; records each call and cancellation."""

    name = "blocking"

    def __init__(self) -> None:
        self.calls = 0
        self.called = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        self.called.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise AssertionError("unreachable")

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        await self.complete(request)
        yield ChatChunk()


@dataclass
class World:
    db: Database
    runner: Runner
    principal: Principal
    agent_id: str
    conversation_id: str
    usage: UsageWriter


@contextlib.asynccontextmanager
async def world(
    tmp_path: Path,
    model: ChatModel,
    *,
    tools: list[str] | None = None,
    tenant_settings: dict[str, Any] | None = None,
    **runner: Any,
) -> AsyncIterator[World]:
    db = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/runs.db"))
    await db.start()
    settings = Settings(
        models={"m": OpenAIModelConfig(provider="openai", model="x")}, default_model="m"
    )
    provide: Callable[[str], ChatModel] = lambda _name: model  # noqa: E731
    factory = AgentFactory(settings, model_provider=provide)
    usage = UsageWriter(db)
    async with db.system() as system:
        tenant = await system.create_tenant("acme", tenant_settings)
    principal = Principal(tenant.id, Role.DEVELOPER, user_id=None)
    config = {"model": "m", "tools": tools or [], "system_prompt": "Be brief."}
    async with db.repos(principal) as repos:
        agent = await repos.agents.create("helper", "", config, None)
        conversation = await repos.conversations.create(None, agent.id, "t")
    run = Runner(db, AgentCatalog(db, factory), usage_writer=usage, **runner)
    try:
        yield World(db, run, principal, agent.id, conversation.id, usage)
    finally:
        await run.aclose()
        await db.close()


async def types_of(handle: RunHandle, after_seq: int = 0) -> list[str]:
    async with contextlib.aclosing(handle.events(after_seq)) as events:
        return [event["type"] async for _, event in events]


async def test_a_run_stores_each_message_tool_call_and_usage(tmp_path: Path) -> None:
    model = ScriptedModel(
        [Message.assistant(tool_calls=[tool_call("calculator", expression="2+3")]), "It is 5."]
    )
    async with world(tmp_path, model, tools=["calculator"]) as w:
        handle = await w.runner.start(
            w.principal, w.conversation_id, [Message.user("2+3?")], mode="wait"
        )
        await handle.wait()

        assert handle.status == "completed"
        assert await types_of(handle) == [
            "run_started", "usage", "message", "tool_call", "tool_result", "message",
            "text_delta", "text_delta", "text_delta", "usage", "message", "run_completed",
        ]  # fmt: skip
        async with w.db.repos(w.principal) as repos:
            history = await repos.messages.history(w.conversation_id)
            run = await repos.runs.get(handle.run_id)
            calls = await repos.tool_calls.list(handle.run_id)
        assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
        assert history[-1].text == "It is 5."
        assert run is not None
        assert run.status == "completed"
        assert run.prompt_tokens > 0
        assert run.completion_tokens > 0
        assert [(c.name, c.status, c.result) for c in calls] == [("calculator", "completed", "5")]
        assert await w.usage.flush() == 2


async def test_message_events_carry_their_stored_seq(tmp_path: Path) -> None:
    async with world(tmp_path, ScriptedModel(["Hi!"])) as w:
        handle = await w.runner.start(w.principal, w.conversation_id, [Message.user("hey")])
        async with contextlib.aclosing(handle.events()) as events:
            messages = [e["data"] async for _, e in events if e["type"] == "message"]

    assert messages == [
        {"message": {"role": "assistant", "content": "Hi!"}, "agent": "helper", "seq": 1}
    ]


async def test_a_follower_resumes_after_the_last_event_it_saw(tmp_path: Path) -> None:
    async with world(tmp_path, ScriptedModel(["one two three"])) as w:
        handle = await w.runner.start(
            w.principal, w.conversation_id, [Message.user("x")], mode="background"
        )
        await handle.wait()

        async with contextlib.aclosing(handle.events(after_seq=3)) as events:
            seqs = [seq async for seq, _ in events]

    assert seqs == list(range(4, handle.log.last_seq + 1))


async def test_the_model_sees_the_stored_history_plus_the_new_input(tmp_path: Path) -> None:
    model = ScriptedModel(["first", "second"])
    async with world(tmp_path, model) as w:
        for text in ("a", "b"):
            handle = await w.runner.start(w.principal, w.conversation_id, [Message.user(text)])
            await handle.wait()

    sent = [(m.role, m.text) for m in model.requests[1].messages]
    assert sent == [("system", "Be brief."), ("user", "a"), ("assistant", "first"), ("user", "b")]


async def test_cancelling_a_run_stops_the_model_call_and_marks_it_cancelled(tmp_path: Path) -> None:
    model = BlockingModel()
    async with world(tmp_path, model) as w:
        handle = await w.runner.start(
            w.principal, w.conversation_id, [Message.user("x")], mode="background"
        )
        await model.called.wait()

        run = await w.runner.cancel(w.principal, handle.run_id)

        assert model.cancelled.is_set()
        assert run is not None
        assert run.status == "cancelled"
        async with contextlib.aclosing(handle.events()) as events:
            last = [event async for _, event in events][-1]
        assert last["type"] == "run_completed"
        assert last["data"]["status"] == "cancelled"


async def test_a_stream_run_stops_when_its_only_follower_leaves(tmp_path: Path) -> None:
    model = BlockingModel()
    async with world(tmp_path, model) as w:
        handle = await w.runner.start(
            w.principal, w.conversation_id, [Message.user("x")], mode="stream"
        )
        events = handle.events()
        assert (await anext(events))[1]["type"] == "run_started"
        await model.called.wait()

        await events.aclose()
        await handle.wait()

        assert handle.status == "cancelled"
        assert model.cancelled.is_set()
        assert model.calls == 1


async def test_a_failing_model_fails_the_run_with_an_error_event(tmp_path: Path) -> None:
    async with world(tmp_path, ScriptedModel([ServerError("upstream down", status=503)])) as w:
        handle = await w.runner.start(
            w.principal, w.conversation_id, [Message.user("x")], mode="wait"
        )
        await handle.wait()
        run = await w.runner.get(w.principal, handle.run_id)

    assert handle.status == "failed"
    assert (await types_of(handle))[-2:] == ["error", "run_completed"]
    assert run is not None
    assert run.status == "failed"
    assert run.error == "ServerError: upstream down"


async def test_a_tenant_cannot_exceed_its_active_run_limit(tmp_path: Path) -> None:
    model = BlockingModel()
    async with world(tmp_path, model, limits=RunLimits(max_active_runs=1)) as w:
        await w.runner.start(w.principal, w.conversation_id, [Message.user("x")], mode="background")

        with pytest.raises(RunLimitError, match="limit 1"):
            await w.runner.start(w.principal, w.conversation_id, [Message.user("y")])


async def test_a_tenant_at_its_run_limit_may_interrupt_its_active_run(tmp_path: Path) -> None:
    model = BlockingModel()
    async with world(tmp_path, model, limits=RunLimits(max_active_runs=1)) as w:
        first = await w.runner.start(w.principal, w.conversation_id, [Message.user("x")])
        await model.called.wait()

        second = await w.runner.start(
            w.principal, w.conversation_id, [Message.user("y")], multitask="interrupt"
        )

        assert first.status == "cancelled"
        assert second.run_id != first.run_id
        second.cancel()
        await second.wait()


async def test_a_tenants_own_settings_override_the_default_limits(tmp_path: Path) -> None:
    model = BlockingModel()
    async with world(tmp_path, model, tenant_settings={"max_active_runs": 1}) as w:
        await w.runner.start(w.principal, w.conversation_id, [Message.user("x")], mode="background")

        with pytest.raises(RunLimitError, match="limit 1"):
            await w.runner.start(w.principal, w.conversation_id, [Message.user("y")])


async def test_a_tenant_past_its_monthly_tokens_cannot_start_runs(tmp_path: Path) -> None:
    async with world(
        tmp_path, ScriptedModel(["Hi there."]), tenant_settings={"max_tokens_per_month": 5}
    ) as w:
        handle = await w.runner.start(
            w.principal, w.conversation_id, [Message.user("x")], mode="wait"
        )
        await handle.wait()
        await w.usage.flush()
        w.runner.limits.forget(w.principal.tenant_id)

        with pytest.raises(QuotaExceededError, match="of its 5 tokens this month"):
            await w.runner.start(w.principal, w.conversation_id, [Message.user("y")])


async def test_a_finished_run_replays_from_the_store_in_a_new_process(tmp_path: Path) -> None:
    async with world(tmp_path, ScriptedModel(["Done."])) as w:
        handle = await w.runner.start(
            w.principal, w.conversation_id, [Message.user("x")], mode="wait"
        )
        await handle.wait()
        fresh = Runner(w.db, w.runner.catalog)

        replay = await fresh.follow(w.principal, handle.run_id)
        assert replay is not None
        events = [event async for _, event in replay]

    assert [e["type"] for e in events] == ["run_started", "message", "run_completed"]
    assert events[-1]["data"]["output"] == "Done."
    assert events[-1]["data"]["usage"] == {"prompt_tokens": 3, "completion_tokens": 1}


async def test_runs_left_running_by_a_dead_process_are_marked_interrupted(tmp_path: Path) -> None:
    async with world(tmp_path, ScriptedModel(["x"])) as w:
        async with w.db.repos(w.principal) as repos:
            run = await repos.runs.create(
                w.conversation_id, w.agent_id, 1, None, "stream", "running"
            )

        assert await w.runner.recover() == 1
        stored = await w.runner.get(w.principal, run.id)

    assert stored is not None
    assert stored.status == "interrupted"
