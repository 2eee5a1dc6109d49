"""FakeLLMServer answers in the exact shapes of OpenAI's chat-completions API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from agentguild.testing import FakeLLMServer, FakeToolCall, Reply
from agentguild.testing import server as server_module

USER_HI = [{"role": "user", "content": "Hi there"}]
ADD_TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two numbers.",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}}},
    },
}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post_chat(
    http: aiohttp.ClientSession, server: FakeLLMServer, **body: Any
) -> tuple[int, Any]:
    body.setdefault("model", "fake-model")
    body.setdefault("messages", USER_HI)
    async with http.post(f"{server.base_url}/chat/completions", json=body) as response:
        return response.status, orjson.loads(await response.read())


async def stream_events(
    http: aiohttp.ClientSession, server: FakeLLMServer, **body: Any
) -> list[bytes]:
    """The raw `data:` payloads of a streamed answer, in order."""
    body = {"model": "fake-model", "messages": USER_HI, "stream": True, **body}
    async with http.post(f"{server.base_url}/chat/completions", json=body) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        raw = await response.read()
    blocks = raw.split(b"\n\n")
    assert blocks[-1] == b"", "the stream must end with a blank line"
    assert all(block.startswith(b"data: ") for block in blocks[:-1])
    return [block.removeprefix(b"data: ") for block in blocks[:-1]]


async def test_base_url_points_at_the_v1_api_on_a_free_local_port() -> None:
    async with FakeLLMServer() as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.port > 0


async def test_models_endpoint_lists_the_configured_models(
    http: aiohttp.ClientSession,
) -> None:
    # given
    async with (
        FakeLLMServer(models=["m1", "m2"]) as server,
        # when
        http.get(f"{server.base_url}/models") as response,
    ):
        body = orjson.loads(await response.read())
    # then
    assert response.status == 200
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["m1", "m2"]
    assert all(m["object"] == "model" for m in body["data"])


async def test_text_reply_is_a_complete_openai_chat_completion(
    http: aiohttp.ClientSession,
) -> None:
    # given
    async with FakeLLMServer(Reply("Hello, world")) as server:
        # when
        status, body = await post_chat(http, server, model="my-model")
    # then
    assert status == 200
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "my-model"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello, world", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] == 2
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_tool_call_reply_carries_function_calls_and_finish_reason_tool_calls(
    http: aiohttp.ClientSession,
) -> None:
    # given
    async with FakeLLMServer(
        Reply(tool_calls=[FakeToolCall("add", {"a": 2, "b": 3}, id="call_x")])
    ) as server:
        # when
        _, body = await post_chat(http, server, tools=[ADD_TOOL])
    # then
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_x",
            "type": "function",
            "function": {"name": "add", "arguments": '{"a":2,"b":3}'},
        }
    ]


async def test_reply_may_call_several_tools_with_distinct_ids(
    http: aiohttp.ClientSession,
) -> None:
    # given
    reply = Reply(tool_calls=[FakeToolCall("add", {"a": 1}), FakeToolCall("mul", '{"x": 2}')])
    async with FakeLLMServer(reply) as server:
        # when
        _, body = await post_chat(http, server)
    # then
    calls = body["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["add", "mul"]
    assert [c["function"]["arguments"] for c in calls] == ['{"a":1}', '{"x": 2}']
    assert calls[0]["id"] != calls[1]["id"]


async def test_reply_can_override_usage_and_finish_reason(http: aiohttp.ClientSession) -> None:
    # given
    reply = Reply("cut", finish_reason="length", prompt_tokens=100, completion_tokens=7)
    async with FakeLLMServer(reply) as server:
        # when
        _, body = await post_chat(http, server)
    # then
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107}


async def test_scripted_items_are_consumed_in_order_then_the_default_responder_answers(
    http: aiohttp.ClientSession,
) -> None:
    # given
    async with FakeLLMServer("first", Reply("second"), mode="echo") as server:
        server.script("third")
        # when
        texts = [
            (await post_chat(http, server))[1]["choices"][0]["message"]["content"] for _ in range(4)
        ]
        # then
        assert texts == ["first", "second", "third", "Hi there"]
        assert server.pending == 0


async def test_custom_responder_receives_the_parsed_request(http: aiohttp.ClientSession) -> None:
    # given
    seen: list[dict[str, Any]] = []

    def responder(request: dict[str, Any]) -> Reply:
        seen.append(request)
        return Reply(f"{len(request['messages'])} messages")

    async with FakeLLMServer(responder=responder) as server:
        # when
        _, body = await post_chat(http, server, temperature=0.5)
    # then
    assert body["choices"][0]["message"]["content"] == "1 messages"
    assert seen == [{"model": "fake-model", "messages": USER_HI, "temperature": 0.5}]


async def test_responder_may_be_async(http: aiohttp.ClientSession) -> None:
    # given
    async def responder(request: dict[str, Any]) -> str:
        return "async answer"

    async with FakeLLMServer(responder=responder) as server:
        # when
        _, body = await post_chat(http, server)
    # then
    assert body["choices"][0]["message"]["content"] == "async answer"


async def test_echo_mode_answers_with_the_last_user_message(http: aiohttp.ClientSession) -> None:
    # given
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "first"}]},
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "last "}, {"type": "text", "text": "one"}],
        },
    ]
    async with FakeLLMServer(mode="echo") as server:
        # when
        _, body = await post_chat(http, server, messages=messages)
    # then
    assert body["choices"][0]["message"]["content"] == "last one"


async def test_tool_loop_mode_calls_the_first_offered_tool_then_reports_its_result(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeLLMServer(mode="tool-loop") as server:
        # given a user question with tools on offer
        # when
        _, first = await post_chat(http, server, tools=[ADD_TOOL])
        # then
        call = first["choices"][0]["message"]["tool_calls"][0]
        assert call["function"] == {"name": "add", "arguments": '{"a":2,"b":3}'}

        # given the tool's result
        messages = [
            *USER_HI,
            first["choices"][0]["message"],
            {"role": "tool", "tool_call_id": call["id"], "content": "5"},
        ]
        # when
        _, second = await post_chat(http, server, messages=messages, tools=[ADD_TOOL])
        # then
        assert second["choices"][0]["message"]["content"] == "The result is 5."
        assert second["choices"][0]["finish_reason"] == "stop"


async def test_tool_loop_mode_uses_the_configured_arguments(http: aiohttp.ClientSession) -> None:
    async with FakeLLMServer(mode="tool-loop", tool_arguments={"x": [1, 2]}) as server:
        _, body = await post_chat(http, server, tools=[ADD_TOOL])
    call = body["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["arguments"] == '{"x":[1,2]}'


async def test_tool_loop_mode_without_tools_echoes(http: aiohttp.ClientSession) -> None:
    async with FakeLLMServer(mode="tool-loop") as server:
        _, body = await post_chat(http, server)
    assert body["choices"][0]["message"]["content"] == "Hi there"


async def test_requests_are_recorded_in_order(http: aiohttp.ClientSession) -> None:
    # given
    async with FakeLLMServer() as server:
        # when
        await post_chat(http, server, messages=[{"role": "user", "content": "one"}])
        await post_chat(http, server, messages=[{"role": "user", "content": "two"}])
        # then
        assert [r["messages"][0]["content"] for r in server.requests] == ["one", "two"]
        assert server.request_count == 2
        server.reset()
        assert (server.requests, server.request_count) == ([], 0)


async def test_invalid_json_body_gets_a_400_and_consumes_no_scripted_item(
    http: aiohttp.ClientSession,
) -> None:
    # given
    async with FakeLLMServer(Reply("kept")) as server:
        # when
        async with http.post(f"{server.base_url}/chat/completions", data=b"{nope") as response:
            status, body = response.status, orjson.loads(await response.read())
        # then
        assert status == 400
        assert body["error"]["type"] == "invalid_request_error"
        assert server.pending == 1
        assert server.requests == []
        assert server.request_count == 1


async def test_in_flight_counts_concurrent_requests(http: aiohttp.ClientSession) -> None:
    # given a responder that holds two requests until released
    arrived = 0
    both_arrived = asyncio.Event()
    release = asyncio.Event()

    async def responder(request: dict[str, Any]) -> str:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both_arrived.set()
        await release.wait()
        return "done"

    async with FakeLLMServer(responder=responder) as server:
        # when
        calls = [asyncio.create_task(post_chat(http, server)) for _ in range(2)]
        await both_arrived.wait()
        # then
        assert server.in_flight == 2
        release.set()
        assert [status for status, _ in await asyncio.gather(*calls)] == [200, 200]
        assert server.in_flight == 0
        assert server.max_in_flight == 2


async def test_latency_delays_every_answer_unless_a_reply_sets_its_own(
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a server-side sleep that records what it was asked to wait
    waited: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay: float, *args: Any) -> Any:
        waited.append(delay)
        return await real_sleep(0, *args)

    monkeypatch.setattr(server_module.asyncio, "sleep", recording_sleep)
    async with FakeLLMServer("global", Reply("own", latency=0.25), latency=0.05) as server:
        # when
        await post_chat(http, server)
        await post_chat(http, server)
    # then
    assert 0.05 in waited
    assert 0.25 in waited


# ---- streaming ------------------------------------------------------------------------


async def test_streamed_text_arrives_as_content_deltas_then_finish_then_done(
    http: aiohttp.ClientSession,
) -> None:
    # given
    async with FakeLLMServer(Reply("Hello big world")) as server:
        # when
        events = await stream_events(http, server)
    # then
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert all("usage" not in c for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": "", "refusal": None}
    assert "".join(d.get("content") or "" for d in deltas) == "Hello big world"
    assert len(deltas) > 3, "text should stream in several pieces"
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }


async def test_streamed_tool_call_starts_with_its_header_then_argument_fragments(
    http: aiohttp.ClientSession,
) -> None:
    # given
    arguments = {"a": 2, "b": 3, "comment": "a longer argument"}
    async with FakeLLMServer(
        Reply(tool_calls=[FakeToolCall("add", arguments, id="call_7")])
    ) as server:
        # when
        events = await stream_events(http, server)
    # then
    chunks = [orjson.loads(e) for e in events[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1]]
    assert deltas[0] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "index": 0,
                "id": "call_7",
                "type": "function",
                "function": {"name": "add", "arguments": ""},
            }
        ],
    }
    fragments = [d["tool_calls"][0] for d in deltas[1:]]
    assert len(fragments) > 1
    assert all(
        set(f) == {"index", "function"} and set(f["function"]) == {"arguments"} for f in fragments
    )
    assert orjson.loads("".join(f["function"]["arguments"] for f in fragments)) == arguments
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_streamed_text_and_two_tool_calls_use_one_index_per_call(
    http: aiohttp.ClientSession,
) -> None:
    # given
    reply = Reply("Let me check.", tool_calls=[FakeToolCall("a", {}), FakeToolCall("b", {})])
    async with FakeLLMServer(reply) as server:
        # when
        events = await stream_events(http, server)
    # then
    deltas = [orjson.loads(e)["choices"][0]["delta"] for e in events[:-2]]
    headers = [d["tool_calls"][0] for d in deltas if "id" in d.get("tool_calls", [{}])[0]]
    assert [(h["index"], h["function"]["name"]) for h in headers] == [(0, "a"), (1, "b")]
    assert "".join(d.get("content") or "" for d in deltas) == "Let me check."


async def test_stream_ends_with_a_usage_chunk_when_include_usage_is_set(
    http: aiohttp.ClientSession,
) -> None:
    # given
    async with FakeLLMServer(Reply("two words", prompt_tokens=11)) as server:
        # when
        events = await stream_events(http, server, stream_options={"include_usage": True})
    # then
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1] == b"[DONE]"


# ---- with the openai SDK --------------------------------------------------------------


@pytest.fixture
async def fake_openai(fake_llm: FakeLLMServer) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=fake_llm.base_url, api_key="test", max_retries=0)
    async with client:
        yield client


async def test_openai_sdk_parses_a_tool_call_reply(
    fake_llm: FakeLLMServer, fake_openai: openai.AsyncOpenAI
) -> None:
    # given
    fake_llm.script(Reply.calling("add", {"a": 1, "b": 2}))
    # when
    completion = await fake_openai.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "1+2?"}]
    )
    # then
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "add"
    assert call.function.arguments == '{"a":1,"b":2}'
    assert completion.usage is not None
    assert completion.usage.total_tokens > 0


async def test_openai_sdk_streams_text_and_usage(
    fake_llm: FakeLLMServer, fake_openai: openai.AsyncOpenAI
) -> None:
    # given
    fake_llm.script(Reply("streamed with the sdk"))
    # when
    stream = await fake_openai.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    # then
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "streamed with the sdk"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
