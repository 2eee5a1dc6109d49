"""The configured gateway stack: fallbacks, cache, tenant isolation, limits, prices."""

from __future__ import annotations

from typing import Any

import pytest

from agentguild.config import Settings
from agentguild.errors import ConfigError, RateLimitExceeded
from agentguild.llm import ChatRequest
from agentguild.llm.metering import UsageAggregator
from agentguild.llm.stack import Gateway
from agentguild.testing import ErrorReply, FakeLLMServer
from agentguild.types import Message


def settings(models: dict[str, Any], **extra: Any) -> Settings:
    return Settings(models=models, cache={"l2": "none"}, **extra)


def ask(text: str, *, tenant: str = "t1", temperature: float | None = 0) -> ChatRequest:
    return ChatRequest(messages=[Message.user(text)], temperature=temperature, tenant_id=tenant)


def scripted(*replies: str, **gateway: Any) -> dict[str, Any]:
    return {"provider": "scripted", "replies": list(replies), "gateway": gateway}


async def test_deterministic_requests_are_answered_from_cache_per_tenant() -> None:
    gateway = Gateway(settings({"demo": scripted("first", "second", "third")}))
    model = gateway.model("demo")

    assert (await model.complete(ask("hi"))).message.text == "first"
    assert (await model.complete(ask("hi"))).message.text == "first"  # a hit
    assert (await model.complete(ask("hi", tenant="t2"))).message.text == "second"
    assert (await model.complete(ask("hi", temperature=0.7))).message.text == "third"

    usage = gateway.usage
    assert isinstance(usage, UsageAggregator)
    totals = usage.totals()
    assert totals[("t1", "demo")].calls == 3
    assert totals[("t1", "demo")].cached_calls == 1
    await gateway.aclose()


async def test_cache_policy_off_calls_the_model_every_time() -> None:
    gateway = Gateway(settings({"demo": scripted("one", "two", cache={"policy": "off"})}))
    model = gateway.model("demo")
    assert [(await model.complete(ask("hi"))).message.text for _ in range(2)] == ["one", "two"]


async def test_fallback_answers_when_every_deployment_of_the_primary_fails() -> None:
    async with FakeLLMServer(*[ErrorReply.server_error(503)] * 4) as server:
        primary = {
            "provider": "openai",
            "model": "fake-model",
            "base_url": server.base_url,
            "gateway": {
                "fallbacks": ["backup"],
                "retry": {"max_attempts": 2, "base_delay_s": 0.001},
            },
        }
        gateway = Gateway(settings({"primary": primary, "backup": scripted("from backup")}))
        response = await gateway.model("primary").complete(ask("hi", temperature=None))
        assert response.message.text == "from backup"
        assert server.request_count == 2  # one retry, then the fallback
        await gateway.aclose()


async def test_rate_limit_refuses_calls_over_the_limit_but_not_cache_hits() -> None:
    limited = scripted("a", "b", "c", rate_limit={"requests_per_minute": 1, "burst_requests": 1})
    gateway = Gateway(settings({"demo": limited}))
    model = gateway.model("demo")

    await model.complete(ask("one"))
    await model.complete(ask("one"))  # served by the cache: costs no request
    with pytest.raises(RateLimitExceeded) as refused:
        await model.complete(ask("two"))
    assert refused.value.retry_after is not None
    assert refused.value.retry_after > 0
    await model.complete(ask("two", tenant="t2"))  # other tenants have their own budget


async def test_price_turns_usage_into_cost() -> None:
    priced = scripted("ok", price={"input_per_mtok": 1_000_000, "output_per_mtok": 0})
    gateway = Gateway(settings({"demo": priced}))
    response = await gateway.model("demo").complete(ask("three word prompt", temperature=None))
    usage = gateway.usage
    assert isinstance(usage, UsageAggregator)
    total = usage.total(tenant_id="t1")
    assert total.cost_usd == pytest.approx(float(response.usage.prompt_tokens))


def test_extra_deployments_need_an_openai_compatible_model() -> None:
    local_with_deployments = {
        "provider": "local",
        "gateway": {"deployments": [{"base_url": "http://127.0.0.1:1/v1"}]},
    }
    gateway = Gateway(settings({"odd": local_with_deployments}))
    with pytest.raises(ConfigError, match="extra deployments need an OpenAI-compatible model"):
        gateway.model("odd")


def test_unknown_model_names_the_configured_ones() -> None:
    gateway = Gateway(settings({"demo": scripted("x")}))
    with pytest.raises(ConfigError, match="model 'nope' is not configured; configured models"):
        gateway.model("nope")
