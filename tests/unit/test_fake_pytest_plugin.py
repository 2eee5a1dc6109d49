"""The pytest plugin gives users' tests a fake LLM server and a model pointed at it."""

from __future__ import annotations

import pytest

from agentguild.errors import ServerError
from agentguild.llm.base import ChatRequest
from agentguild.testing import ErrorReply, FakeLLMServer, Reply
from agentguild.types import Message

pytest_plugins = ["pytester"]


async def test_fake_llm_fixture_is_a_started_server(fake_llm: FakeLLMServer) -> None:
    assert fake_llm.base_url.startswith("http://127.0.0.1:")
    assert fake_llm.request_count == 0


@pytest.mark.fake_llm(Reply("scripted by marker"), latency=0.0)
async def test_fake_llm_marker_configures_the_server(fake_llm_model: object) -> None:
    # given the marker's script
    from agentguild.llm.openai_compat import OpenAICompatModel

    assert isinstance(fake_llm_model, OpenAICompatModel)
    # when
    response = await fake_llm_model.complete(ChatRequest([Message.user("hi")]))
    # then
    assert response.message.text == "scripted by marker"


async def test_fake_llm_model_talks_to_the_fake_llm_server(
    fake_llm: FakeLLMServer, fake_llm_model: object
) -> None:
    # given
    from agentguild.llm.openai_compat import OpenAICompatModel

    assert isinstance(fake_llm_model, OpenAICompatModel)
    fake_llm.script(ErrorReply.server_error(503), Reply("after the failure"))
    # when the first call fails and the second succeeds
    with pytest.raises(ServerError):
        await fake_llm_model.complete(ChatRequest([Message.user("hi")]))
    response = await fake_llm_model.complete(ChatRequest([Message.user("again")]))
    # then
    assert response.message.text == "after the failure"
    assert [r["messages"][-1]["content"] for r in fake_llm.requests] == ["hi", "again"]


def test_fixtures_work_in_pytest_asyncio_strict_mode(pytester: pytest.Pytester) -> None:
    # given a user's test suite in strict mode, which does not know our fixtures are async
    pytester.makepyfile(
        """
        import aiohttp
        import pytest

        @pytest.mark.asyncio
        async def test_user(fake_llm):
            async with aiohttp.ClientSession() as http:
                async with http.get(fake_llm.base_url + "/models") as response:
                    assert response.status == 200
        """
    )
    # when
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_mode=strict",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    )
    # then
    result.assert_outcomes(passed=1)
