"""Settings: which models exist and how agents run by default.

Settings come from three places, highest priority first:

1. environment variables `AGENTGUILD_<FIELD>`, nesting with `__`
   (`AGENTGUILD_DEFAULT_MODEL=qwen`, `AGENTGUILD_MODELS__QWEN__TIMEOUT=30`);
2. a config file (YAML or TOML): the path given to `load_settings` (the CLI's `--config`),
   else `$AGENTGUILD_CONFIG`, else `./agentguild.yaml`, `./agentguild.yml` or
   `./agentguild.toml`, whichever exists first;
3. the defaults below: one model, `local`, the bundled offline model.

`load_settings()` applies all three and turns every problem into a `ConfigError` that names
the file or environment variable and the field. API keys are never read from files: a
model names the environment variable holding its key (`api_key_env`), and keys are held
as `SecretStr` so they never show in reprs, logs or error messages.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, SettingsError

from ._gateway_settings import CacheSettings
from ._model_settings import (
    AgentDefaults,
    LocalModelConfig,
    ModelConfig,
    ModelName,
    OpenAIModelConfig,
    ScriptedModelConfig,
    ScriptedToolCall,
    default_models,
)
from ._platform_settings import DatabaseSettings, QueueSettings, SecuritySettings, ServerSettings
from .errors import ConfigError

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_FILES",
    "ENV_PREFIX",
    "AgentDefaults",
    "LocalModelConfig",
    "ModelConfig",
    "ModelName",
    "OpenAIModelConfig",
    "ScriptedModelConfig",
    "ScriptedToolCall",
    "Settings",
    "find_config_file",
    "load_settings",
    "read_config_file",
]

ENV_PREFIX = "AGENTGUILD_"
"""Prefix of every environment variable agentguild reads."""
CONFIG_ENV_VAR = "AGENTGUILD_CONFIG"
"""Environment variable naming the config file to load."""
DEFAULT_CONFIG_FILES = ("agentguild.yaml", "agentguild.yml", "agentguild.toml")
"""Files looked for in the working directory when no config file is named."""

_ENV_NESTED_DELIMITER = "__"


class Settings(BaseSettings):
    """Everything agentguild reads from its environment and config file.

    Construct it with `load_settings()` to include the config file; `Settings()` alone
    reads only environment variables and defaults.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=_ENV_NESTED_DELIMITER,
        extra="forbid",
        frozen=True,
    )

    models: dict[ModelName, ModelConfig] = Field(default_factory=default_models)
    """Configured models by name; a model named `local` always exists."""
    default_model: ModelName = "local"
    """The model used when none is named."""
    agent: AgentDefaults = Field(default_factory=AgentDefaults)
    """Agent defaults: system prompt, turn limit."""
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    """Where the server stores its data (SQLite file by default, PostgreSQL in production)."""
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    """Token signing, the first admin, API-key caching."""
    server: ServerSettings = Field(default_factory=ServerSettings)
    """The HTTP server: address, limits, CORS, Redis."""
    queue: QueueSettings = Field(default_factory=QueueSettings)
    """Background jobs: in-process (default) or Celery workers on a Redis/RabbitMQ broker."""
    cache: CacheSettings = Field(default_factory=CacheSettings)
    """The response cache shared by every model (L1 in process, L2 on disk or Redis)."""

    _config_file: Path | None = PrivateAttr(default=None)

    @field_validator("models")
    @classmethod
    def _always_has_local(cls, models: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
        if "local" in models:
            return models
        return {**default_models(), **models}

    @field_validator("default_model")
    @classmethod
    def _is_configured(cls, name: str, info: ValidationInfo) -> str:
        models = info.data.get("models")
        if models is not None and name not in models:
            raise ValueError(
                f"model {name!r} is not configured; configured models: {', '.join(models)}"
            )
        return name

    @model_validator(mode="after")
    def _fallbacks_are_configured_and_acyclic(self) -> Settings:
        for name, config in self.models.items():
            gateway = config.gateway
            for other in (*gateway.fallbacks, *gateway.context_fallbacks):
                if other not in self.models:
                    raise ValueError(
                        f"models.{name}.gateway: fallback {other!r} is not configured; "
                        f"configured models: {', '.join(self.models)}"
                    )
        for name in self.models:
            self._check_no_cycle(name, ())
        return self

    def _check_no_cycle(self, name: str, path: tuple[str, ...]) -> None:
        if name in path:
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise ValueError(f"model fallbacks form a cycle: {cycle}")
        gateway = self.models[name].gateway
        for other in (*gateway.fallbacks, *gateway.context_fallbacks):
            self._check_no_cycle(other, (*path, name))

    @property
    def config_file(self) -> Path | None:
        """The config file these settings were loaded from, if any."""
        return self._config_file

    @property
    def model_names(self) -> list[str]:
        """The configured models' names, in configuration order."""
        return list(self.models)


def find_config_file(explicit: str | Path | None = None) -> Path | None:
    """The config file to load: `explicit`, else `$AGENTGUILD_CONFIG`, else a default file.

    Raises `ConfigError` if a named file does not exist; returns None if no file was named
    and none of `DEFAULT_CONFIG_FILES` exists in the working directory.
    """
    named = explicit if explicit is not None else os.environ.get(CONFIG_ENV_VAR) or None
    if named is not None:
        path = Path(named).expanduser()
        if not path.is_file():
            origin = "" if explicit is not None else f" (from {CONFIG_ENV_VAR})"
            raise ConfigError(f"config file {path}{origin} does not exist")
        return path
    for candidate in DEFAULT_CONFIG_FILES:
        path = Path(candidate)
        if path.is_file():
            return path
    return None


def read_config_file(path: Path) -> dict[str, Any]:
    """The contents of a YAML (`.yaml`, `.yml`) or TOML (`.toml`) config file, as a dict."""
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    data: object
    if suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"config file {path} is not valid YAML: {_yaml_problem(exc)}"
            ) from exc
    elif suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    else:
        raise ConfigError(
            f"config file {path} has an unknown format; use a .yaml, .yml or .toml file"
        )
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of settings at the top level, "
            f"not a {type(data).__name__}"
        )
    return data


def load_settings(config_file: str | Path | None = None) -> Settings:
    """Load and validate the settings: environment over config file over defaults.

    `config_file` names the file to read (see `find_config_file` for the fallbacks).
    Raises `ConfigError` naming the file or environment variable and the field at fault.
    """
    path = find_config_file(config_file)
    file_data = read_config_file(path) if path is not None else {}
    if path is not None:
        _reject_keys_in_file(file_data, path)
    try:
        env_data = EnvSettingsSource(Settings)()
    except SettingsError as exc:
        # e.g. AGENTGUILD_MODELS holding malformed JSON; the message names the field.
        raise ConfigError(f"invalid configuration in the environment: {exc}") from None
    merged = _deep_merge(file_data, env_data)
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, merged, env_data)) from None
    settings._config_file = path
    return settings


# ---- helpers -------------------------------------------------------------------------


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "syntax error"
    if mark is None:
        return str(problem)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"


def _reject_keys_in_file(data: Mapping[str, Any], path: Path) -> None:
    models = data.get("models")
    if not isinstance(models, Mapping):
        return
    for name, model in models.items():
        if isinstance(model, Mapping) and "api_key" in model:
            env_name = f"{ENV_PREFIX}MODELS__{str(name).upper()}__API_KEY"
            raise ConfigError(
                f"{path}: models.{name}.api_key: API keys are never read from config files; "
                f"name the variable holding the key with `api_key_env: SOME_VAR` "
                f"(or set {env_name})"
            )


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def _describe(
    exc: ValidationError, path: Path | None, merged: Mapping[str, Any], env: Mapping[str, Any]
) -> str:
    """A readable, secret-free account of validation errors, naming where each came from."""
    where = f"in {path}" if path is not None else "in the environment"
    lines = [f"invalid configuration {where}:"]
    for error in exc.errors(include_input=False, include_url=False):
        field = _field_path(error["loc"], merged)
        source = _source_of(field, path, env)
        lines.append(f"  {'.'.join(field) or '(top level)'}{source}: {_message(error)}")
    return "\n".join(lines)


def _field_path(loc: tuple[int | str, ...], data: Mapping[str, Any]) -> list[str]:
    """The error location as the user wrote it (without pydantic's union tags)."""
    field: list[str] = []
    node: object = data
    for part in loc:
        if isinstance(node, Mapping):
            if part not in node and node.get("provider") == part:
                continue  # the discriminated union's tag, not a key the user wrote
            node = node.get(part)
        else:
            node = None
        field.append(str(part))
    return field


def _source_of(field: list[str], path: Path | None, env: Mapping[str, Any]) -> str:
    node: object = env
    for part in field:
        if not isinstance(node, Mapping) or part not in node:
            return ""
        node = node[part]
    variable = ENV_PREFIX + _ENV_NESTED_DELIMITER.join(field).upper()
    return f" (from environment variable {variable})" if path is not None else f" ({variable})"


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "union_tag_not_found":
        return "missing 'provider' (one of 'openai', 'local', 'scripted')"
    if kind == "extra_forbidden":
        return "unknown setting (check the spelling)"
    if kind == "missing":
        return "required but missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")
