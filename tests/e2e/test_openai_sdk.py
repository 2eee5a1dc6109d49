"""The official `openai` SDK against `/v1`: every agent is a model, tools run server-side."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import openai
import pytest
import pytest_asyncio
from openai.types.chat import ChatCompletionMessageParam
from runs_support import LiveServer, Tenant, admin, serve, settings_for

from agentguild.testing import FakeLLMServer

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is 2+3?"}]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fake() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer(mode="tool-loop", tool_arguments={"expression": "2+3"}) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(
    fake: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveServer]:
    model = {"provider": "openai", "model": "fake-model", "base_url": fake.base_url}
    settings = settings_for(tmp_path_factory.mktemp("sdk"), {"fake": model})
    async with serve(settings) as live:
        yield live


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sdk(server: LiveServer) -> AsyncIterator[tuple[openai.AsyncOpenAI, str, Tenant]]:
    """An SDK client with an API key, and the name of an agent with the calculator."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        tenant = await admin(http)
        agent = await tenant.agent({"model": "fake", "tools": ["calculator"]}, name="calc-agent")
        key = await tenant.api_key()
        client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
        async with client:
            yield client, agent["name"], tenant


async def test_non_streaming_completion_is_the_agents_final_answer(
    sdk: tuple[openai.AsyncOpenAI, str, Tenant],
) -> None:
    client, agent, _ = sdk

    completion = await client.chat.completions.create(model=agent, messages=QUESTION)

    assert completion.object == "chat.completion"
    assert completion.model == agent
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "The result is 5."
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert completion.usage.completion_tokens > 0


async def test_streaming_completion_streams_the_answer_and_usage(
    sdk: tuple[openai.AsyncOpenAI, str, Tenant],
) -> None:
    client, agent, _ = sdk

    stream = await client.chat.completions.create(
        model=agent,
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The result is 5."
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert all(reason is None for reason in finishes[:-1])
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert {c.id for c in chunks} == {chunks[0].id}


async def test_agents_are_listed_as_models(sdk: tuple[openai.AsyncOpenAI, str, Tenant]) -> None:
    client, agent, _ = sdk

    models = [model.id async for model in client.models.list()]

    assert agent in models
    assert "assistant" in models  # the agent created at first start


async def test_an_unknown_model_is_a_404_in_openais_error_shape(
    sdk: tuple[openai.AsyncOpenAI, str, Tenant],
) -> None:
    client, _, _ = sdk

    with pytest.raises(openai.NotFoundError) as raised:
        await client.chat.completions.create(model="no-such-agent", messages=QUESTION)

    assert raised.value.code == "model_not_found"
    assert raised.value.param == "model"


async def test_completions_record_usage_but_store_no_conversation(
    server: LiveServer, sdk: tuple[openai.AsyncOpenAI, str, Tenant]
) -> None:
    client, agent, tenant = sdk
    services = server.services
    await services.usage_writer.flush()
    before = (await tenant.client.get("/api/conversations", headers=tenant.headers)).json()

    await client.chat.completions.create(model=agent, messages=QUESTION)

    after = (await tenant.client.get("/api/conversations", headers=tenant.headers)).json()
    assert after == before
    assert await services.usage_writer.flush() == 2  # two model calls: tool call, answer
