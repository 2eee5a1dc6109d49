"""The fake LLM server runs as a separate process, started and stopped by one helper."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from agentguild.testing import FakeServerError, start_fake_server_process

ADD_TOOL = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def test_process_serves_the_configured_mode_until_the_block_exits() -> None:
    # given
    with start_fake_server_process(mode="tool-loop", tool_arguments={"a": 40, "b": 2}) as url:
        body = {
            "model": "fake-model",
            "messages": [{"role": "user", "content": "40+2?"}],
            "tools": [ADD_TOOL],
        }
        async with (
            aiohttp.ClientSession() as http,
            # when
            http.post(f"{url}/chat/completions", json=body) as response,
        ):
            answer = orjson.loads(await response.read())
    # then
    assert url.startswith("http://127.0.0.1:")
    assert url.endswith("/v1")
    call = answer["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "add", "arguments": '{"a":40,"b":2}'}
    # and the process is gone
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"{url}/models")


def test_process_that_cannot_listen_raises_a_clear_error(busy_port: int) -> None:
    with (
        pytest.raises(FakeServerError, match="exited with code"),
        start_fake_server_process(port=busy_port),
    ):
        pass
