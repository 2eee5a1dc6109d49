"""A client that goes away stops the agent's upstream model calls at once.

The agent runs an endless tool loop against a fake LLM that takes ten minutes per answer.
Each test waits until the first model request has reached the fake server, then
disconnects, and waits (on events, not sleeps) until the cancellation has reached the
model call: the in-flight call was abandoned, since awaiting it could not end within the
test's bound. The fake server's request count then proves no further call was made.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from runs_support import LiveServer, Tenant, admin, serve, settings_for, sse_events

from agentguild.config import Settings
from agentguild.llm.base import ChatChunk, ChatModel, ChatRequest, ChatResponse
from agentguild.llm.registry import resolve_model
from agentguild.testing import FakeLLMServer, Reply

LATENCY_S = 600.0
"""How long the fake LLM takes to answer: far beyond `WAIT_S`."""
WAIT_S = 60.0
"""How long a test waits for the cancellation to reach the model call."""


class Upstream:
    """The fake server's responder: always calls the calculator; signals each arrival."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()

    async def __call__(self, request: dict[str, Any]) -> Reply:
        self.arrived.set()
        return Reply.calling("calculator", {"expression": "1+1"})


class Watched:
    """A model wrapper that notes when a call of it is cancelled."""

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.cancelled = asyncio.Event()

    @property
    def name(self) -> str:
        return self.inner.name

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        try:
            return await self.inner.complete(request)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        try:
            async for chunk in self.inner.stream(request):
                yield chunk
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled.set()
            raise


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def upstream() -> AsyncIterator[tuple[FakeLLMServer, Upstream]]:
    responder = Upstream()
    async with FakeLLMServer(responder=responder, latency=LATENCY_S) as fake:
        yield fake, responder


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(
    upstream: tuple[FakeLLMServer, Upstream], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[LiveServer, dict[str, Watched]]]:
    fake, _ = upstream
    model = {"provider": "openai", "model": "fake-model", "base_url": fake.base_url}
    settings: Settings = settings_for(tmp_path_factory.mktemp("disconnect"), {"fake": model})
    watched: dict[str, Watched] = {}

    def provide(name: str) -> ChatModel:
        watched[name] = Watched(resolve_model(name, settings))
        return watched[name]

    async with serve(settings, provide) as live:
        yield live, watched


@pytest_asyncio.fixture(loop_scope="session")
async def setup(
    server: tuple[LiveServer, dict[str, Watched]], upstream: tuple[FakeLLMServer, Upstream]
) -> AsyncIterator[tuple[LiveServer, Tenant, str, FakeLLMServer, Upstream]]:
    live, watched = server
    fake, responder = upstream
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        tenant = await admin(client)
        config = {"model": "fake", "tools": ["calculator"], "max_turns": 50}
        agent = await tenant.agent(config)
        fake.reset()
        responder.arrived.clear()
        for model in watched.values():
            model.cancelled.clear()
        yield live, tenant, agent["name"], fake, responder


def _model(server: tuple[LiveServer, dict[str, Watched]]) -> Watched:
    """The agent's model, as the server built it (on its first use)."""
    return server[1]["fake"]


async def test_leaving_a_streamed_run_cancels_it_and_its_model_call(
    setup: tuple[LiveServer, Tenant, str, FakeLLMServer, Upstream],
    server: tuple[LiveServer, dict[str, Watched]],
) -> None:
    live, tenant, agent, fake, responder = setup
    conversation_id = await tenant.conversation(agent)
    url = f"/api/conversations/{conversation_id}/runs"

    async with tenant.client.stream(
        "POST", url, headers=tenant.headers, json={"input": "loop", "mode": "stream"}
    ) as response:
        started = await anext(sse_events(response))
        await responder.arrived.wait()
    handle = live.services.runner.registry.get(started.data["run_id"], await _home(live))
    assert handle is not None
    async with asyncio.timeout(WAIT_S):
        await handle.wait()
        await _model(server).cancelled.wait()

    assert handle.status == "cancelled"
    assert fake.request_count == 1  # final: the run is over
    run = await tenant.client.get(f"/api/runs/{handle.run_id}", headers=tenant.headers)
    assert run.json()["status"] == "cancelled"


async def test_leaving_a_streamed_completion_cancels_its_model_call(
    setup: tuple[LiveServer, Tenant, str, FakeLLMServer, Upstream],
    server: tuple[LiveServer, dict[str, Watched]],
) -> None:
    _, tenant, agent, fake, responder = setup
    model = _model(server)
    key = await tenant.api_key()
    body = {"model": agent, "messages": [{"role": "user", "content": "loop"}], "stream": True}

    async with tenant.client.stream(
        "POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body
    ) as response:
        assert response.status_code == 200
        await responder.arrived.wait()
    async with asyncio.timeout(WAIT_S):
        await model.cancelled.wait()

    assert fake.request_count == 1


async def test_abandoning_a_plain_completion_cancels_its_model_call(
    setup: tuple[LiveServer, Tenant, str, FakeLLMServer, Upstream],
    server: tuple[LiveServer, dict[str, Watched]],
) -> None:
    _, tenant, agent, fake, responder = setup
    model = _model(server)
    key = await tenant.api_key()
    body = {"model": agent, "messages": [{"role": "user", "content": "loop"}]}
    request = asyncio.create_task(
        tenant.client.post(
            "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body
        )
    )

    await responder.arrived.wait()
    request.cancel()  # the client gives up: its connection closes
    async with asyncio.timeout(WAIT_S):
        await model.cancelled.wait()

    assert fake.request_count == 1


async def _home(live: LiveServer) -> str:
    """The id of the bootstrap tenant (the admin's)."""
    async with live.services.db.system() as system:
        tenant = await system.tenant_by_name("default")
    assert tenant is not None
    tenant_id: str = tenant.id
    return tenant_id
