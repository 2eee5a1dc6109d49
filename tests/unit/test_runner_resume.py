"""Resuming a run another worker left half-way: no tool call runs twice, none is lost."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentguild._platform_settings import DatabaseSettings
from agentguild.config import OpenAIModelConfig, Settings
from agentguild.llm.base import ChatModel
from agentguild.llm.scripted import ScriptedModel, tool_call
from agentguild.runtime._resume import NOT_RETRIED_RESULT
from agentguild.runtime.agent_factory import AgentFactory
from agentguild.runtime.catalog import AgentCatalog
from agentguild.runtime.runner import Runner
from agentguild.security import Principal, Role
from agentguild.store import Database
from agentguild.tools.base import Tool, tool
from agentguild.types import Message


@dataclass
class Stage:
    db: Database
    runner: Runner
    principal: Principal
    conversation_id: str
    run_id: str
    executed: Counter[str]
    model: ScriptedModel


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[Stage]:
    """A run whose worker died after calling three tools at once: `charge` completed
    (result stored, message not yet), `charge` in flight, `lookup` (idempotent) in flight."""
    executed: Counter[str] = Counter()

    async def charge(amount: int) -> str:
        """Charge the card (not idempotent)."""
        executed[f"charge:{amount}"] += 1
        return f"charged {amount}"

    async def lookup(key: str) -> str:
        """Look a value up (idempotent)."""
        executed[f"lookup:{key}"] += 1
        return f"value of {key}"

    tools: dict[str, Tool] = {
        "charge": tool(charge),
        "lookup": tool(lookup, idempotent=True),
    }
    model = ScriptedModel(["All done."])
    db = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/resume.db"))
    await db.start()
    settings = Settings(
        models={"m": OpenAIModelConfig(provider="openai", model="x")}, default_model="m"
    )
    provide: Callable[[str], ChatModel] = lambda _name: model  # noqa: E731
    factory = AgentFactory(settings, tools=tools, model_provider=provide)
    async with db.system() as system:
        tenant = await system.create_tenant("acme", None)
    principal = Principal(tenant.id, Role.DEVELOPER)
    done, in_flight, lookup_call = (
        tool_call("charge", amount=1),
        tool_call("charge", amount=2),
        tool_call("lookup", key="k"),
    )
    async with db.repos(principal) as repos:
        agent = await repos.agents.create(
            "helper", "", {"model": "m", "tools": ["charge", "lookup"]}, None
        )
        conversation = await repos.conversations.create(None, agent.id, "t")
        run = await repos.runs.create(conversation.id, agent.id, 1, None, "background", "running")
        await repos.messages.append(conversation.id, [Message.user("pay")], run_id=run.id)
        await repos.messages.append(
            conversation.id,
            [Message.assistant(None, tool_calls=[done, in_flight, lookup_call])],
            run_id=run.id,
        )
        row = await repos.tool_calls.start(run.id, conversation.id, done)
        await repos.tool_calls.finish(row.id, "charged 1", False, 5.0)
        await repos.tool_calls.start(run.id, conversation.id, in_flight)
        await repos.tool_calls.start(run.id, conversation.id, lookup_call)
    runner = Runner(db, AgentCatalog(db, factory))
    try:
        yield Stage(db, runner, principal, conversation.id, run.id, executed, model)
    finally:
        await runner.aclose()
        await db.close()


async def test_a_resumed_run_completes_without_running_a_tool_call_twice(stage: Stage) -> None:
    # when another worker resumes the run
    handle = await stage.runner.resume(stage.principal, stage.run_id)
    assert handle is not None
    await handle.wait()

    # then the completed call is not re-run, the non-idempotent one in flight is not
    # retried, the idempotent one is, and the model decides how to go on
    assert stage.executed == Counter({"lookup:k": 1})
    run = await stage.runner.get(stage.principal, stage.run_id)
    assert run is not None
    assert run.status == "completed"
    async with stage.db.repos(stage.principal) as repos:
        history = await repos.messages.history(stage.conversation_id)
    assert [(m.role, m.text) for m in history] == [
        ("user", "pay"),
        ("assistant", ""),
        ("tool", "charged 1"),
        ("tool", NOT_RETRIED_RESULT),
        ("tool", "value of k"),
        ("assistant", "All done."),
    ]
    tool_messages = [m.tool_call_id for m in history if m.role == "tool"]
    assert len(tool_messages) == len(set(tool_messages)) == 3
    [request] = stage.model.requests
    assert [m.role for m in request.messages][-4:] == ["assistant", "tool", "tool", "tool"]


async def test_a_finished_run_is_not_resumed(stage: Stage) -> None:
    handle = await stage.runner.resume(stage.principal, stage.run_id)
    assert handle is not None
    await handle.wait()
    assert await stage.runner.resume(stage.principal, stage.run_id) is None
    assert stage.executed == Counter({"lookup:k": 1})
