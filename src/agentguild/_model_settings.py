"""Model configurations: which provider, endpoint and options each configured model has.

Part of `agentguild.config` (re-exported there); see that module for how settings load.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SecretStr,
    StringConstraints,
    field_validator,
)

from ._gateway_settings import GatewayConfig

_ENV_VAR_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _is_env_var_name(value: str) -> bool:
    return re.fullmatch(_ENV_VAR_NAME, value) is not None


ModelName: TypeAlias = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$", max_length=128)
]
"""A configured model's name: letters, digits and `. _ : / -`, starting alphanumeric."""


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _GatewayMixin(BaseModel):
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    """Routing, cache policy, retries, breaker, rate limits and price (see docs/gateway.md)."""


class OpenAIModelConfig(_GatewayMixin, _Config):
    """A model served by an OpenAI-compatible endpoint (Qwen/DashScope, OpenAI, vLLM...)."""

    provider: Literal["openai"]
    model: Annotated[str, StringConstraints(min_length=1)]
    """The model id the endpoint expects, e.g. `qwen-plus` or `gpt-4o-mini`."""
    base_url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")] = (
        "https://api.openai.com/v1"
    )
    """The endpoint's base URL, up to and including `/v1` (or its equivalent)."""
    api_key_env: str | None = None
    """The NAME of the environment variable holding the API key (never the key itself);
    None for endpoints without authentication (Ollama, a local vLLM)."""
    api_key: SecretStr | None = Field(default=None, repr=False)
    """The key itself: only accepted from the environment
    (`AGENTGUILD_MODELS__<NAME>__API_KEY`), never from a config file. Wins over
    `api_key_env`."""
    timeout: Annotated[float, Field(gt=0)] = 60.0
    """Seconds a whole call (or the silence between two streamed chunks) may take."""
    connect_timeout: Annotated[float, Field(gt=0)] = 10.0
    """Seconds establishing a connection may take."""
    max_connections: Annotated[int, Field(ge=1)] = 1000
    """Size of the HTTP connection pool."""
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    """Extra HTTP headers sent with every request."""

    @field_validator("base_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _looks_like_a_variable_name(cls, value: str | None) -> str | None:
        if value is not None and not _is_env_var_name(value):
            # Deliberately does not echo the value: it may be the key itself.
            raise ValueError(
                "must be the NAME of an environment variable (e.g. DASHSCOPE_API_KEY), "
                "not the key itself"
            )
        return value


class LocalModelConfig(_GatewayMixin, _Config):
    """The offline model run in-process by llama-cpp-python (bundled SmolLM2 by default)."""

    provider: Literal["local"] = "local"
    model_path: str | None = None
    """A GGUF file; None uses the bundled SmolLM2-135M-Instruct."""
    n_ctx: Annotated[int, Field(ge=256)] = 4096
    """Context window, in tokens."""
    n_threads: Annotated[int, Field(ge=1)] | None = None
    """CPU threads for inference; None lets llama.cpp decide."""
    max_tokens: Annotated[int, Field(ge=1)] = 512
    """Default cap on tokens generated per answer."""
    seed: int = 0
    """Sampling seed, for reproducible answers."""

    @field_validator("model_path")
    @classmethod
    def _expand_home(cls, value: str | None) -> str | None:
        return str(Path(value).expanduser()) if value else None


class ScriptedToolCall(_Config):
    """A scripted reply that calls a tool instead of answering with text."""

    tool: Annotated[str, StringConstraints(min_length=1)]
    arguments: dict[str, JsonValue] = Field(default_factory=dict)


class ScriptedModelConfig(_GatewayMixin, _Config):
    """A deterministic model answering from a script: for demos and tests, no model needed."""

    provider: Literal["scripted"]
    replies: Annotated[list[str | ScriptedToolCall], Field(min_length=1)]
    """Answers in order: text, or `{tool: name, arguments: {...}}` to call a tool."""
    cycle: bool = True
    """Start over after the last reply (instead of failing)."""


ModelConfig: TypeAlias = Annotated[
    OpenAIModelConfig | LocalModelConfig | ScriptedModelConfig,
    Field(discriminator="provider"),
]
"""How to build one model; `provider` selects the kind."""


def default_models() -> dict[str, ModelConfig]:
    return {"local": LocalModelConfig()}


class AgentDefaults(_Config):
    """Defaults for the agents the CLI (and other front ends) create."""

    system_prompt: str | None = None
    """The agents' system prompt; None for none."""
    max_turns: Annotated[int, Field(ge=1, le=1000)] = 10
    """Model calls one run may make before it stops with `max_turns`."""
