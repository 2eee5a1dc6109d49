"""Cache keys: a canonical, tenant-scoped digest of everything that shapes a model's answer."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import quote

import orjson

from .base import ChatModel, ChatRequest

KEY_VERSION = 1
"""Bumped whenever the key layout or the cached value format changes (old keys then miss)."""

_MAX_UNWRAP = 16


class UncacheableRequestError(ValueError):
    """The request holds a value with no canonical serialisation (it is sent uncached)."""


def model_identity(model: ChatModel) -> str:
    """What distinguishes one upstream model from another: provider, base URL, model name.

    Follows `.inner` through wrappers (retry, breaker, ...) to the first model exposing
    `base_url` and `model` (e.g. `OpenAICompatModel`); otherwise the outermost model's
    class and `name`. Pass an explicit identity to `CachedModel` when neither fits (a
    router over several different models, say).
    """
    current: object = model
    for _ in range(_MAX_UNWRAP):
        base_url = getattr(current, "base_url", None)
        model_name = getattr(current, "model", None)
        if isinstance(base_url, str) and isinstance(model_name, str):
            return f"{type(current).__name__}|{base_url.rstrip('/')}|{model_name}"
        current = getattr(current, "inner", None)
        if current is None:
            break
    return f"{type(model).__name__}|{model.name}"


def is_deterministic(request: ChatRequest) -> bool:
    """Whether the same request should give the same answer: temperature 0 or a seed set.

    An unset temperature means the provider's default (usually 1), so it is not.
    """
    return request.seed is not None or (
        request.temperature is not None and request.temperature == 0
    )


def tenant_prefix(tenant_id: str) -> str:
    """The key prefix of one tenant's entries (URL-quoted so ':' and glob characters in a
    tenant id cannot make one tenant's prefix match another's)."""
    return quote(tenant_id, safe="") + ":"


def cache_key(request: ChatRequest, identity: str) -> str:
    """`<tenant>:<sha256>` of the canonical request: tenant, model identity, messages,
    tools, tool_choice, response_format and every generation parameter.

    `caller_id` is deliberately not part of it: a tenant's users share the tenant's cache.
    Raises `UncacheableRequestError` when `extra` or `response_format` hold a value that
    has no JSON form.
    """
    canonical: dict[str, Any] = {
        "v": KEY_VERSION,
        "tenant": request.tenant_id,
        "model": identity,
        "messages": [message.to_openai() for message in request.messages],
        "tools": [spec.to_openai() for spec in request.tools],
        "tool_choice": request.tool_choice,
        "response_format": request.response_format,
        # Floats are normalised so that 0 and 0.0 (equal to every provider) share a key.
        "temperature": _float(request.temperature),
        "top_p": _float(request.top_p),
        "max_tokens": request.max_tokens,
        "stop": None if request.stop is None else list(request.stop),
        "seed": request.seed,
        "extra": dict(request.extra),
    }
    try:
        blob = orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise UncacheableRequestError(f"request cannot be keyed: {exc}") from exc
    return tenant_prefix(request.tenant_id) + hashlib.sha256(blob).hexdigest()


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)
