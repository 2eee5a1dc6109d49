"""Cache keys: tenant-scoped, sensitive to every generation parameter, blind to the caller."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from agentguild.llm import ChatRequest, OpenAICompatModel, ScriptedModel
from agentguild.llm.cache import (
    CachedModel,
    ResponseCache,
    cache_key,
    is_deterministic,
    model_identity,
    tenant_prefix,
)
from agentguild.types import Message, ToolSpec

IDENTITY = "OpenAICompatModel|http://llm.local/v1|qwen-plus"
BASE = ChatRequest([Message.user("What is 2 + 2?")], temperature=0.0)
ADD = ToolSpec("add", "Add two numbers.", {"type": "object", "properties": {}})

# Every field of ChatRequest that shapes the answer, each with a value differing from BASE.
KEYED_CHANGES: dict[str, Any] = {
    "messages": [Message.user("What is 2 + 3?")],
    "tools": [ADD],
    "tool_choice": "required",
    "temperature": 0.5,
    "top_p": 0.9,
    "max_tokens": 64,
    "stop": ["\n"],
    "seed": 7,
    "response_format": {"type": "json_object"},
    "extra": {"presence_penalty": 0.1},
    "tenant_id": "another-tenant",
}


@pytest.mark.parametrize("field", sorted(KEYED_CHANGES))
def test_every_generation_parameter_changes_the_key(field: str) -> None:
    # Given a request and the same request with one field changed
    changed = replace(BASE, **{field: KEYED_CHANGES[field]})
    # Then their keys differ
    assert cache_key(changed, IDENTITY) != cache_key(BASE, IDENTITY)


def test_every_request_field_but_the_caller_is_covered_by_the_parameter_test() -> None:
    # Guards the test above: a field added to ChatRequest must be keyed (or excused here)
    fields = set(ChatRequest.__dataclass_fields__)
    assert fields - set(KEYED_CHANGES) == {"caller_id"}


def test_model_identity_changes_the_key() -> None:
    other = "OpenAICompatModel|http://other.local/v1|qwen-plus"
    assert cache_key(BASE, IDENTITY) != cache_key(BASE, other)


def test_callers_of_one_tenant_share_a_key() -> None:
    alice = replace(BASE, tenant_id="acme", caller_id="key-alice")
    bob = replace(BASE, tenant_id="acme", caller_id="key-bob")
    assert cache_key(alice, IDENTITY) == cache_key(bob, IDENTITY)


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_identical_requests_of_different_tenants_never_share_a_key(
    tenant_a: str, tenant_b: str
) -> None:
    # Given the same request made by two different tenants (any characters in their ids)
    assume(tenant_a != tenant_b)
    a = replace(BASE, tenant_id=tenant_a)
    b = replace(BASE, tenant_id=tenant_b)
    # Then the keys differ, and neither tenant's key prefix matches the other's keys
    key_a, key_b = cache_key(a, IDENTITY), cache_key(b, IDENTITY)
    assert key_a != key_b
    assert key_a.startswith(tenant_prefix(tenant_a))
    assert not key_b.startswith(tenant_prefix(tenant_a))


def test_key_is_prefixed_by_the_tenant_for_scanning() -> None:
    key = cache_key(replace(BASE, tenant_id="acme"), IDENTITY)
    prefix, digest = key.split(":")
    assert prefix == "acme"
    assert len(digest) == 64


def test_integral_and_float_temperatures_share_a_key() -> None:
    assert cache_key(replace(BASE, temperature=0), IDENTITY) == cache_key(BASE, IDENTITY)


def test_key_does_not_depend_on_dict_order() -> None:
    one = replace(BASE, extra={"a": 1, "b": 2})
    two = replace(BASE, extra={"b": 2, "a": 1})
    assert cache_key(one, IDENTITY) == cache_key(two, IDENTITY)


@pytest.mark.parametrize(
    ("temperature", "seed", "expected"),
    [
        (0.0, None, True),
        (0, None, True),
        (None, 3, True),
        (0.7, 3, True),
        (0.7, None, False),
        (None, None, False),
    ],
)
def test_deterministic_means_temperature_zero_or_a_seed(
    temperature: float | None, seed: int | None, expected: bool
) -> None:
    request = replace(BASE, temperature=temperature, seed=seed)
    assert is_deterministic(request) is expected


def test_identity_of_an_openai_model_is_its_provider_base_url_and_model() -> None:
    model = OpenAICompatModel("qwen-plus", base_url="http://llm.local/v1/", name="custom")
    assert model_identity(model) == "OpenAICompatModel|http://llm.local/v1|qwen-plus"


def test_identity_looks_through_wrappers_to_the_provider() -> None:
    provider = OpenAICompatModel("qwen-plus", base_url="http://llm.local/v1")
    wrapped = CachedModel(provider, cache=ResponseCache())
    assert model_identity(wrapped) == model_identity(provider)


def test_identity_of_a_model_without_endpoint_is_its_class_and_name() -> None:
    assert model_identity(ScriptedModel([], name="demo")) == "ScriptedModel|demo"


def test_request_with_an_unserialisable_parameter_is_not_cached() -> None:
    # Given a request whose provider-specific extra holds an object with no JSON form
    model = CachedModel(ScriptedModel(["hi"]), cache=ResponseCache())
    request = replace(BASE, extra={"callback": object()})
    # Then the model has no key for it (it is passed through uncached)
    assert model.key_for(request) is None
