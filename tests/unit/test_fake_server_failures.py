"""FakeLLMServer injects the failures real providers produce, per request, in OpenAI's shapes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from agentguild.testing import (
    DropConnection,
    ErrorReply,
    FakeLLMServer,
    Hang,
    MalformedReply,
    Reply,
)

CHAT_BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "Hi"}]}
STREAM_BODY = {**CHAT_BODY, "stream": True}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, server: FakeLLMServer, body: dict[str, Any] = CHAT_BODY
) -> tuple[int, dict[str, str], bytes]:
    async with http.post(f"{server.base_url}/chat/completions", json=body) as response:
        return response.status, dict(response.headers), await response.read()


async def read_events(response: aiohttp.ClientResponse, count: int) -> list[bytes]:
    """Read exactly `count` SSE events from a streaming response."""
    events = []
    while len(events) < count:
        line = await response.content.readline()
        if line.startswith(b"data: "):
            events.append(line.removeprefix(b"data: ").rstrip(b"\n"))
    return events


async def hang_after_arrival(server: FakeLLMServer, item: Hang) -> asyncio.Event:
    """Make the next request hang, and return an event set when it has arrived."""
    arrived = asyncio.Event()

    def responder(request: dict[str, Any]) -> Hang:
        arrived.set()
        return item

    server.responder = responder
    return arrived


async def test_rate_limit_is_a_429_with_retry_after_and_an_openai_error_body(
    http: aiohttp.ClientSession,
) -> None:
    # given
    async with FakeLLMServer(ErrorReply.rate_limited(retry_after=2)) as server:
        # when
        status, headers, raw = await post(http, server)
    # then
    assert status == 429
    assert headers["Retry-After"] == "2"
    assert orjson.loads(raw) == {
        "error": {
            "message": "Rate limit reached for requests. Please try again in 2s.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_have_their_status_and_a_server_error_body(
    http: aiohttp.ClientSession, status: int
) -> None:
    # given
    async with FakeLLMServer(ErrorReply.server_error(status)) as server:
        # when
        got, headers, raw = await post(http, server)
    # then
    assert got == status
    assert headers["Content-Type"] == "application/json"
    error = orjson.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "server_error"


def test_server_error_rejects_a_non_5xx_status() -> None:
    with pytest.raises(ValueError, match="5xx"):
        ErrorReply.server_error(404)


async def test_unauthorized_is_a_401_with_code_invalid_api_key(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeLLMServer(ErrorReply.unauthorized()) as server:
        status, _, raw = await post(http, server)
    assert status == 401
    error = orjson.loads(raw)["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")


async def test_context_length_exceeded_is_a_400_with_openai_code_and_param(
    http: aiohttp.ClientSession,
) -> None:
    # given
    async with FakeLLMServer(ErrorReply.context_length_exceeded(4096, 5000)) as server:
        # when
        status, _, raw = await post(http, server)
    # then
    assert status == 400
    assert orjson.loads(raw) == {
        "error": {
            "message": "This model's maximum context length is 4096 tokens. However, your "
            "messages resulted in 5000 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }


async def test_failures_are_scripted_per_request_like_replies(
    http: aiohttp.ClientSession,
) -> None:
    # given a rate limit, then a success
    async with FakeLLMServer(ErrorReply.rate_limited(), Reply("recovered")) as server:
        # when
        first, _, _ = await post(http, server)
        second, _, raw = await post(http, server)
    # then
    assert (first, second) == (429, 200)
    assert orjson.loads(raw)["choices"][0]["message"]["content"] == "recovered"


async def test_malformed_reply_is_a_200_whose_body_is_not_json(
    http: aiohttp.ClientSession,
) -> None:
    # given
    async with FakeLLMServer(MalformedReply()) as server:
        # when
        status, headers, raw = await post(http, server)
    # then
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)


async def test_malformed_stream_has_a_broken_data_line_after_valid_chunks(
    http: aiohttp.ClientSession,
) -> None:
    # given
    async with FakeLLMServer(MalformedReply(after_chunks=2)) as server:
        # when
        _, _, raw = await post(http, server, STREAM_BODY)
    # then
    events = [e.removeprefix(b"data: ") for e in raw.split(b"\n\n") if e]
    assert len(events) == 4
    assert all(orjson.loads(e)["object"] == "chat.completion.chunk" for e in events[:2])
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(events[2])
    assert events[3] == b"[DONE]"


async def test_dropped_connection_gives_no_answer(http: aiohttp.ClientSession) -> None:
    async with FakeLLMServer(DropConnection()) as server:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(http, server)


async def test_dropped_stream_ends_after_the_given_chunks_without_completing(
    http: aiohttp.ClientSession,
) -> None:
    # given
    async with (
        FakeLLMServer(DropConnection(after_chunks=2)) as server,
        http.post(f"{server.base_url}/chat/completions", json=STREAM_BODY) as resp,
    ):
        # when
        events = await read_events(resp, 2)
        # then
        assert all(orjson.loads(e)["object"] == "chat.completion.chunk" for e in events)
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.content.read()


async def test_server_keeps_answering_after_a_dropped_connection(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeLLMServer(DropConnection(), Reply("still here")) as server:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(http, server)
        status, _, _ = await post(http, server)
    assert status == 200


async def test_hang_never_answers_so_the_client_times_out(http: aiohttp.ClientSession) -> None:
    # given
    async with FakeLLMServer(Hang()) as server:
        # when / then
        with pytest.raises(asyncio.TimeoutError):
            async with http.post(
                f"{server.base_url}/chat/completions",
                json=CHAT_BODY,
                timeout=aiohttp.ClientTimeout(total=0.2),
            ):
                pass


async def test_closing_the_server_does_not_wait_for_hanging_requests(
    http: aiohttp.ClientSession,
) -> None:
    # given a request that hangs
    server = FakeLLMServer()
    await server.start()
    arrived = await hang_after_arrival(server, Hang())
    pending = asyncio.create_task(post(http, server))
    await arrived.wait()
    # when
    await server.close()
    # then the client sees the connection closed
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await pending


async def test_closing_the_server_cuts_a_slow_answer(http: aiohttp.ClientSession) -> None:
    # given an answer that would take an hour
    server = FakeLLMServer(latency=3600)
    await server.start()
    arrived = asyncio.Event()

    def responder(request: dict[str, Any]) -> str:
        arrived.set()
        return "too late"

    server.responder = responder
    pending = asyncio.create_task(post(http, server))
    await arrived.wait()
    # when
    await server.close()
    # then
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await pending


async def test_hanging_stream_stalls_after_the_given_chunks(
    http: aiohttp.ClientSession,
) -> None:
    # given
    server = FakeLLMServer()
    await server.start()
    await hang_after_arrival(server, Hang(after_chunks=2))
    async with http.post(f"{server.base_url}/chat/completions", json=STREAM_BODY) as resp:
        # when two chunks have arrived and the stream stalls
        events = await read_events(resp, 2)
        assert len(events) == 2
        await server.close()
        # then the stream never completes
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.content.read()


# ---- as the openai SDK sees them ------------------------------------------------------


@pytest.fixture
async def fake_openai(fake_llm: FakeLLMServer) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(
        base_url=fake_llm.base_url, api_key="test", max_retries=0, timeout=2.0
    )
    async with client:
        yield client


async def create(client: openai.AsyncOpenAI, **options: Any) -> Any:
    return await client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "Hi"}], **options
    )


async def test_openai_sdk_raises_rate_limit_error_with_the_retry_after_header(
    fake_llm: FakeLLMServer, fake_openai: openai.AsyncOpenAI
) -> None:
    fake_llm.script(ErrorReply.rate_limited(retry_after=3))
    with pytest.raises(openai.RateLimitError) as caught:
        await create(fake_openai)
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.code == "rate_limit_exceeded"


async def test_openai_sdk_sees_context_length_exceeded_as_a_bad_request(
    fake_llm: FakeLLMServer, fake_openai: openai.AsyncOpenAI
) -> None:
    fake_llm.script(ErrorReply.context_length_exceeded())
    with pytest.raises(openai.BadRequestError) as caught:
        await create(fake_openai)
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "messages"


async def test_openai_sdk_sees_401_as_an_authentication_error(
    fake_llm: FakeLLMServer, fake_openai: openai.AsyncOpenAI
) -> None:
    fake_llm.script(ErrorReply.unauthorized())
    with pytest.raises(openai.AuthenticationError):
        await create(fake_openai)


async def test_openai_sdk_times_out_on_a_hang(
    fake_llm: FakeLLMServer, fake_openai: openai.AsyncOpenAI
) -> None:
    fake_llm.script(Hang())
    with pytest.raises(openai.APITimeoutError):
        await create(fake_openai)


async def test_openai_sdk_fails_on_a_dropped_stream(
    fake_llm: FakeLLMServer, fake_openai: openai.AsyncOpenAI
) -> None:
    fake_llm.script(DropConnection(after_chunks=2))
    stream = await create(fake_openai, stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
