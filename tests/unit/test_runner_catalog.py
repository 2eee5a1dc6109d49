"""Agents from stored configurations: validation, caching, caller scoping, the catalog."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from agentguild._platform_settings import DatabaseSettings
from agentguild.agents.assistant import Assistant
from agentguild.config import ScriptedModelConfig, Settings
from agentguild.errors import ConfigError
from agentguild.llm.base import ChatModel
from agentguild.llm.scripted import ScriptedModel
from agentguild.runtime._history import INTERRUPTED_TOOL_RESULT, close_open_tool_calls
from agentguild.runtime.agent_factory import AgentFactory, bind_caller, run_events
from agentguild.runtime.catalog import AgentCatalog
from agentguild.security import Principal, Role
from agentguild.store import Database
from agentguild.types import Message, ToolCall

SETTINGS = Settings(
    models={"m": ScriptedModelConfig(provider="scripted", replies=["hi"])}, default_model="m"
)


def _factory(models: dict[str, ChatModel] | None = None) -> AgentFactory:
    made = models if models is not None else {}
    return AgentFactory(
        SETTINGS, model_provider=lambda name: made.setdefault(name, ScriptedModel(["hi"]))
    )


def test_check_names_unknown_models_and_tools() -> None:
    factory = _factory()

    with pytest.raises(
        ConfigError, match="model 'gpt-x' is not configured; configured models: local, m"
    ):
        factory.check({"model": "gpt-x"})
    with pytest.raises(ConfigError, match=r"unknown tool.*'shell'.*available tools: calculator"):
        factory.check({"tools": ["shell"]})
    with pytest.raises(ConfigError, match="invalid agent configuration"):
        factory.check({"max_turns": 0})


def test_agents_are_built_once_per_version_and_share_their_model() -> None:
    factory = _factory()
    config = {"model": "m", "tools": ["calculator"], "system_prompt": "Be brief."}

    first = factory.build("agt_1", 1, "helper", config)

    assert factory.build("agt_1", 1, "helper", config) is first
    second = factory.build("agt_1", 2, "helper", config)
    assert second is not first
    assert isinstance(first, Assistant)
    assert isinstance(second, Assistant)
    assert first.model is second.model
    assert first.tools.names == ["calculator"]


def test_unknown_generation_parameters_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"agent 'helper'.*unknown model parameter"):
        _factory().build("agt_1", 1, "helper", {"model_params": {"temprature": 1}})


async def test_model_calls_carry_the_bound_tenant_and_caller() -> None:
    models: dict[str, ChatModel] = {}
    agent = _factory(models).build("agt_1", 1, "helper", {})

    async def call() -> None:
        bind_caller("tnt_1", "key_1")
        async for _ in run_events(agent, [Message.user("x")], stream=False):
            pass

    await asyncio.create_task(call())

    request = models["m"].requests[0]  # type: ignore[attr-defined]
    assert (request.tenant_id, request.caller_id) == ("tnt_1", "key_1")


@pytest_asyncio.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[tuple[AgentCatalog, Principal]]:
    db = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/catalog.db"))
    await db.start()
    async with db.system() as system:
        tenant = await system.create_tenant("acme")
    principal = Principal(tenant.id, Role.DEVELOPER)
    try:
        yield AgentCatalog(db, _factory(), ttl_s=60, miss_refresh_s=0), principal
    finally:
        await db.close()


async def _create(catalog: AgentCatalog, principal: Principal, name: str, **config: object) -> str:
    async with catalog.db.repos(principal) as repos:
        view = await repos.agents.create(name, "", dict(config), None)
    return view.id


async def test_catalog_finds_agents_by_id_and_name(
    catalog: tuple[AgentCatalog, Principal],
) -> None:
    agents, principal = catalog
    agent_id = await _create(agents, principal, "helper", model="m")

    by_name = await agents.by_name(principal, "helper")
    by_id = await agents.get(principal, agent_id)

    assert by_name is not None
    assert by_name is by_id
    assert by_name.version == 1
    assert by_name.agent.name == "helper"
    assert [e.name for e in await agents.list(principal)] == ["helper"]
    assert await agents.by_name(Principal("tnt_other", Role.ADMIN), "helper") is None


async def test_catalog_serves_from_memory_until_invalidated(
    catalog: tuple[AgentCatalog, Principal],
) -> None:
    agents, principal = catalog
    agent_id = await _create(agents, principal, "helper", model="m")
    before = await agents.by_name(principal, "helper")
    async with agents.db.repos(principal) as repos:
        await repos.agents.update(agent_id, config={"model": "m", "max_turns": 3})

    cached = await agents.by_name(principal, "helper")
    agents.invalidate(principal.tenant_id)
    fresh = await agents.by_name(principal, "helper")

    assert cached is before
    assert fresh is not None
    assert fresh.version == 2


async def test_an_agent_that_cannot_be_built_is_listed_with_its_problem(
    catalog: tuple[AgentCatalog, Principal],
) -> None:
    agents, principal = catalog
    await _create(agents, principal, "stale", model="removed-model")

    entry = await agents.by_name(principal, "stale")

    assert entry is not None
    assert entry.problem is not None
    with pytest.raises(ConfigError, match="agent 'stale' cannot run: model 'removed-model'"):
        _ = entry.agent


def test_tool_calls_without_results_get_an_interrupted_result() -> None:
    call_a, call_b = ToolCall("a", "calculator", "{}"), ToolCall("b", "calculator", "{}")
    history = [
        Message.user("x"),
        Message.assistant(tool_calls=[call_a, call_b]),
        Message.tool("a", "1"),
        Message.user("y"),
        Message.assistant(tool_calls=[ToolCall("c", "calculator", "{}")]),
    ]

    repaired = close_open_tool_calls(history)

    assert [(m.role, m.tool_call_id) for m in repaired] == [
        ("user", None),
        ("assistant", None),
        ("tool", "a"),
        ("tool", "b"),
        ("user", None),
        ("assistant", None),
        ("tool", "c"),
    ]
    assert repaired[3].text == INTERRUPTED_TOOL_RESULT
    assert close_open_tool_calls(repaired) == repaired
