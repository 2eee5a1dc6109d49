"""Runs over HTTP: the three modes, following and resuming, cancelling, visibility, WebSocket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
import websockets
from e2e_helpers import assert_error, bearer, login, unique
from runs_support import LiveServer, Tenant, admin, serve, settings_for, sse_events

from agentguild.llm.base import ChatChunk, ChatModel, ChatRequest, ChatResponse
from agentguild.llm.scripted import ScriptedModel, tool_call
from agentguild.types import Message

SCRIPTED = {"provider": "scripted", "replies": ["unused"]}


def calculating(request: ChatRequest) -> Message:
    """Asks the calculator for 6*7, then reports its result."""
    last = request.messages[-1]
    if last.role == "tool":
        return Message.assistant(f"The answer is {last.text}.")
    return Message.assistant(tool_calls=[tool_call("calculator", expression="6*7")])


class Blocking:
    """A model that never answers (until its call is cancelled)."""

    name = "blocking"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        await self.complete(request)
        yield ChatChunk()


def provide(name: str) -> ChatModel:
    if name == "blocking":
        return Blocking()
    return ScriptedModel([calculating], cycle=True, name=name)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("runs")
    async with serve(settings_for(tmp, {"calc": SCRIPTED, "blocking": SCRIPTED}), provide) as live:
        yield live


@pytest_asyncio.fixture(loop_scope="session")
async def tenant(server: LiveServer) -> AsyncIterator[Tenant]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield await admin(client)


async def _calc_conversation(tenant: Tenant) -> str:
    agent = await tenant.agent({"model": "calc", "tools": ["calculator"]})
    return await tenant.conversation(agent["id"])


async def _start(tenant: Tenant, conversation_id: str, **body: Any) -> httpx.Response:
    return await tenant.client.post(
        f"/api/conversations/{conversation_id}/runs", headers=tenant.headers, json=body
    )


async def test_stream_mode_sends_every_event_over_sse(tenant: Tenant) -> None:
    conversation_id = await _calc_conversation(tenant)
    url = f"/api/conversations/{conversation_id}/runs"

    body = {"input": "What is 6*7?", "mode": "stream"}
    async with tenant.client.stream("POST", url, headers=tenant.headers, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [event async for event in sse_events(response)]

    assert [e.id for e in events] == list(range(1, len(events) + 1))
    types = [e.type for e in events]
    assert types[0] == "run_started"
    assert types[-1] == "run_completed"
    assert {"tool_call", "tool_result", "message", "text_delta", "usage"} <= set(types)
    started, completed = events[0].data, events[-1].data
    assert started["conversation_id"] == conversation_id
    assert response.headers["location"] == f"/api/runs/{started['run_id']}"
    assert completed["status"] == "completed"
    assert completed["output"] == "The answer is 42."
    assert completed["usage"]["completion_tokens"] > 0
    result = next(e.data for e in events if e.type == "tool_result")
    assert (result["name"], result["content"], result["is_error"]) == ("calculator", "42", False)
    assert "".join(e.data["text"] for e in events if e.type == "text_delta") == "The answer is 42."


async def test_wait_mode_answers_with_the_finished_run(tenant: Tenant) -> None:
    conversation_id = await _calc_conversation(tenant)

    response = await _start(tenant, conversation_id, input="6*7?", mode="wait")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["run"]["status"] == "completed"
    assert body["output"] == "The answer is 42."
    assert [m["role"] for m in body["messages"]] == ["assistant", "tool", "assistant"]
    stored = await tenant.messages(conversation_id)
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert {m["run_id"] for m in stored} == {body["run"]["id"]}


async def test_background_run_can_be_followed_and_resumed(tenant: Tenant) -> None:
    conversation_id = await _calc_conversation(tenant)

    response = await _start(
        tenant, conversation_id, input=[{"role": "user", "content": "x"}], mode="background"
    )

    assert response.status_code == 202, response.text
    run = response.json()["run"]
    assert run["status"] == "queued"
    stream_url = f"/api/runs/{run['id']}/stream"
    async with tenant.client.stream("GET", stream_url, headers=tenant.headers) as full:
        everything = [event async for event in sse_events(full)]
    resumed_headers = {**tenant.headers, "Last-Event-ID": "3"}
    async with tenant.client.stream("GET", stream_url, headers=resumed_headers) as resumed:
        rest = [event async for event in sse_events(resumed)]
    assert [e.id for e in rest] == [e.id for e in everything][3:]
    assert rest[-1].data["status"] == "completed"
    got = await tenant.client.get(f"/api/runs/{run['id']}", headers=tenant.headers)
    assert got.json()["status"] == "completed"
    assert got.json()["usage"]["prompt_tokens"] > 0


async def test_join_waits_for_a_background_run_and_answers_like_wait(tenant: Tenant) -> None:
    conversation_id = await _calc_conversation(tenant)
    run = (await _start(tenant, conversation_id, input="6*7?", mode="background")).json()["run"]

    joined = await tenant.client.get(f"/api/runs/{run['id']}/join", headers=tenant.headers)
    again = await tenant.client.get(f"/api/runs/{run['id']}/join", headers=tenant.headers)

    assert joined.status_code == 200, joined.text
    body = joined.json()
    assert body["run"]["status"] == "completed"
    assert body["output"] == "The answer is 42."
    assert [m["role"] for m in body["messages"]] == ["assistant", "tool", "assistant"]
    assert again.json() == body  # a finished run answers at once, the same
    assert_error(await tenant.client.get("/api/runs/run_nope/join", headers=tenant.headers), 404)


async def test_cancel_stops_a_background_run(tenant: Tenant) -> None:
    agent = await tenant.agent({"model": "blocking"})
    conversation_id = await tenant.conversation(agent["id"])
    run = (await _start(tenant, conversation_id, input="hi", mode="background")).json()["run"]
    stream_url = f"/api/runs/{run['id']}/stream"

    async with tenant.client.stream("GET", stream_url, headers=tenant.headers) as response:
        events = sse_events(response)
        assert (await anext(events)).type == "run_started"
        cancelled = await tenant.client.post(
            f"/api/runs/{run['id']}/cancel", headers=tenant.headers
        )
        rest = [event async for event in events]

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert rest[-1].type == "run_completed"
    assert rest[-1].data["status"] == "cancelled"


async def test_runs_of_other_users_and_unknown_things_are_404(tenant: Tenant) -> None:
    conversation_id = await _calc_conversation(tenant)
    run = (await _start(tenant, conversation_id, input="x", mode="wait")).json()["run"]
    username = unique("user")
    created = await tenant.client.post(
        "/api/admin/users",
        headers=tenant.headers,
        json={"username": username, "password": "password-123", "role": "user"},
    )
    assert created.status_code == 201, created.text
    user = bearer(await login(tenant.client, username, "password-123"))

    assert_error(await tenant.client.get(f"/api/runs/{run['id']}", headers=user), 404, "not_found")
    joined = await tenant.client.get(f"/api/runs/{run['id']}/join", headers=user)
    assert_error(joined, 404, "not_found")
    hidden = await tenant.client.post(
        f"/api/conversations/{conversation_id}/runs", headers=user, json={"input": "x"}
    )
    assert_error(hidden, 404, "not_found")
    assert_error(await tenant.client.get("/api/runs/run_nope", headers=tenant.headers), 404)
    no_agent = await _start(tenant, conversation_id, input="x", agent_id="nope", mode="wait")
    assert_error(no_agent, 404, "not_found")


@pytest.mark.parametrize(
    "body",
    [{"input": []}, {"input": [{"content": "no role"}]}, {"input": "x", "mode": "later"}, {}],
)
async def test_malformed_run_requests_are_422(tenant: Tenant, body: dict[str, Any]) -> None:
    conversation_id = await _calc_conversation(tenant)

    assert_error(await _start(tenant, conversation_id, **body), 422, "validation_error")


async def test_websocket_chat_streams_the_same_events(server: LiveServer, tenant: Tenant) -> None:
    conversation_id = await _calc_conversation(tenant)
    url = server.url.replace("http://", "ws://") + f"/api/ws?token={tenant.token}"

    async with websockets.connect(url) as socket:
        await socket.send(
            orjson.dumps(
                {"type": "run", "conversation_id": conversation_id, "input": "6*7?"}
            ).decode()
        )
        received: list[dict[str, Any]] = []
        while not received or received[-1]["type"] != "run_completed":
            received.append(orjson.loads(await socket.recv()))

    assert [m["seq"] for m in received] == list(range(1, len(received) + 1))
    assert received[0]["type"] == "run_started"
    assert received[-1]["data"]["output"] == "The answer is 42."


async def test_websocket_cancel_and_errors(server: LiveServer, tenant: Tenant) -> None:
    agent = await tenant.agent({"model": "blocking"})
    conversation_id = await tenant.conversation(agent["id"])
    url = server.url.replace("http://", "ws://") + f"/api/ws?token={tenant.token}"

    async with websockets.connect(url) as socket:
        await socket.send('{"type": "run", "conversation_id": "conv_missing", "input": "x"}')
        missing = orjson.loads(await socket.recv())
        await socket.send(
            orjson.dumps({"type": "run", "conversation_id": conversation_id, "input": "x"}).decode()
        )
        started = orjson.loads(await socket.recv())
        await socket.send('{"type": "cancel"}')
        completed = orjson.loads(await socket.recv())

    assert missing == {
        "type": "error",
        "data": {"type": "not_found", "message": missing["data"]["message"], "agent": None},
    }
    assert started["type"] == "run_started"
    assert completed["type"] == "run_completed"
    assert completed["data"]["status"] == "cancelled"


async def test_websocket_without_a_valid_token_is_refused(server: LiveServer) -> None:
    url = server.url.replace("http://", "ws://") + "/api/ws?token=nope"

    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(url):
            pass
