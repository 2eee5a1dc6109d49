"""Settings: file formats, precedence, validation errors, secrets; the model registry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentguild.config import (
    LocalModelConfig,
    OpenAIModelConfig,
    ScriptedModelConfig,
    Settings,
    load_settings,
)
from agentguild.errors import ConfigError
from agentguild.llm import ChatRequest, ScriptedModel, registry
from agentguild.llm.registry import LocalModelUnavailableError, build_model, resolve_model
from agentguild.types import Message

SECRET = "sk-test-secret-0123456789"

QWEN_YAML = """\
default_model: qwen-plus
models:
  qwen-plus:
    provider: openai
    model: qwen-plus
    base_url: https://dashscope.aliyuncs.com/compatible-mode/v1
    api_key_env: DASHSCOPE_API_KEY
    timeout: 30
agent:
  system_prompt: Be brief.
  max_turns: 4
"""
QWEN_YAML_ENV_ADDRESSABLE = QWEN_YAML.replace("qwen-plus:", "qwen:").replace(
    "default_model: qwen-plus", "default_model: qwen"
)
"""The same, with a model name environment variables can address (no '-')."""


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No AGENTGUILD_* variables from the caller's shell, and an empty working directory."""
    for name in list(os.environ):
        if name.upper().startswith("AGENTGUILD_") or name == "DASHSCOPE_API_KEY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---- loading and precedence ----------------------------------------------------------


def test_without_a_config_file_only_the_local_model_exists() -> None:
    settings = load_settings()

    assert settings.default_model == "local"
    assert settings.models == {"local": LocalModelConfig()}
    assert settings.config_file is None


def test_yaml_file_is_loaded_and_local_model_is_still_available(tmp_path: Path) -> None:
    path = write(tmp_path / "conf.yaml", QWEN_YAML)

    settings = load_settings(path)

    assert settings.default_model == "qwen-plus"
    assert settings.model_names == ["local", "qwen-plus"]
    qwen = settings.models["qwen-plus"]
    assert isinstance(qwen, OpenAIModelConfig)
    assert qwen.timeout == 30
    assert settings.agent.system_prompt == "Be brief."
    assert settings.agent.max_turns == 4
    assert settings.config_file == path


def test_toml_file_is_loaded(tmp_path: Path) -> None:
    path = write(
        tmp_path / "agentguild.toml",
        """\
default_model = "ollama"
[models.ollama]
provider = "openai"
model = "qwen2.5:7b"
base_url = "http://localhost:11434/v1/"
""",
    )

    settings = load_settings(path)

    ollama = settings.models["ollama"]
    assert isinstance(ollama, OpenAIModelConfig)
    assert ollama.base_url == "http://localhost:11434/v1"  # trailing slash dropped
    assert ollama.api_key_env is None


def test_default_file_in_working_directory_is_found(isolated: Path) -> None:
    write(isolated / "agentguild.yml", QWEN_YAML)

    settings = load_settings()

    assert settings.default_model == "qwen-plus"
    assert settings.config_file == Path("agentguild.yml")


def test_config_environment_variable_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTGUILD_CONFIG", str(write(tmp_path / "elsewhere.yaml", QWEN_YAML)))

    assert load_settings().default_model == "qwen-plus"


def test_explicit_path_wins_over_config_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTGUILD_CONFIG", str(write(tmp_path / "env.yaml", QWEN_YAML)))
    explicit = write(tmp_path / "explicit.yaml", "agent: {max_turns: 2}\n")

    settings = load_settings(explicit)

    assert settings.default_model == "local"
    assert settings.agent.max_turns == 2


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "conf.yaml", QWEN_YAML_ENV_ADDRESSABLE)
    monkeypatch.setenv("AGENTGUILD_MODELS__QWEN__TIMEOUT", "5")
    monkeypatch.setenv("AGENTGUILD_AGENT__MAX_TURNS", "7")
    monkeypatch.setenv("AGENTGUILD_DEFAULT_MODEL", "local")

    settings = load_settings(path)

    qwen = settings.models["qwen"]
    assert isinstance(qwen, OpenAIModelConfig)
    assert qwen.timeout == 5  # from the environment
    assert qwen.model == "qwen-plus"  # the rest of the model still from the file
    assert settings.agent.max_turns == 7
    assert settings.agent.system_prompt == "Be brief."
    assert settings.default_model == "local"


def test_a_model_can_be_configured_from_the_environment_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTGUILD_MODELS__VLLM__PROVIDER", "openai")
    monkeypatch.setenv("AGENTGUILD_MODELS__VLLM__MODEL", "Qwen/Qwen2.5-7B-Instruct")
    monkeypatch.setenv("AGENTGUILD_MODELS__VLLM__BASE_URL", "http://gpu-box:8000/v1")

    settings = load_settings()

    assert settings.models["vllm"] == OpenAIModelConfig(
        provider="openai", model="Qwen/Qwen2.5-7B-Instruct", base_url="http://gpu-box:8000/v1"
    )


# ---- validation errors ---------------------------------------------------------------


def test_named_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*missing\.yaml does not exist"):
        load_settings(tmp_path / "missing.yaml")


def test_invalid_value_error_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = write(tmp_path / "conf.yaml", QWEN_YAML.replace("timeout: 30", "timeout: -1"))

    with pytest.raises(ConfigError) as caught:
        load_settings(path)

    message = str(caught.value)
    assert str(path) in message
    assert "models.qwen-plus.timeout: Input should be greater than 0" in message


def test_invalid_environment_value_error_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTGUILD_AGENT__MAX_TURNS", "many")

    with pytest.raises(ConfigError, match="AGENTGUILD_AGENT__MAX_TURNS") as caught:
        load_settings()

    assert "agent.max_turns" in str(caught.value)


def test_model_without_provider_is_rejected_with_the_choices(tmp_path: Path) -> None:
    path = write(tmp_path / "conf.yaml", "models:\n  mine:\n    model: gpt-4o\n")

    with pytest.raises(ConfigError, match=r"models\.mine: missing 'provider' \(one of"):
        load_settings(path)


def test_misspelled_setting_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "conf.yaml", "agent:\n  max_turnz: 3\n")

    with pytest.raises(ConfigError, match=r"agent\.max_turnz: unknown setting"):
        load_settings(path)


def test_default_model_must_be_configured(tmp_path: Path) -> None:
    path = write(tmp_path / "conf.yaml", "default_model: gpt-x\n")

    with pytest.raises(
        ConfigError, match="model 'gpt-x' is not configured; configured models: local"
    ):
        load_settings(path)


def test_invalid_yaml_error_gives_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "conf.yaml", "models:\n  a: [unclosed\n")

    with pytest.raises(ConfigError, match=r"not valid YAML: .* at line \d+"):
        load_settings(path)


def test_file_must_hold_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "conf.yaml", "- just\n- a list\n")

    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_settings(path)


def test_unknown_file_format_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "conf.ini", "[x]\n")

    with pytest.raises(ConfigError, match=r"use a \.yaml, \.yml or \.toml file"):
        load_settings(path)


# ---- secrets -------------------------------------------------------------------------


def test_api_key_in_a_file_is_rejected_without_echoing_it(tmp_path: Path) -> None:
    path = write(tmp_path / "conf.yaml", QWEN_YAML.replace("timeout: 30", f"api_key: {SECRET}"))

    with pytest.raises(ConfigError, match="API keys are never read from config files") as caught:
        load_settings(path)

    assert SECRET not in str(caught.value)


def test_a_key_put_in_api_key_env_is_rejected_without_echoing_it(tmp_path: Path) -> None:
    path = write(tmp_path / "conf.yaml", QWEN_YAML.replace("DASHSCOPE_API_KEY", SECRET))

    with pytest.raises(ConfigError, match="must be the NAME of an environment variable") as caught:
        load_settings(path)

    assert SECRET not in str(caught.value)


def test_api_key_from_the_environment_never_shows_in_repr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "conf.yaml", QWEN_YAML_ENV_ADDRESSABLE)
    monkeypatch.setenv("AGENTGUILD_MODELS__QWEN__API_KEY", SECRET)

    settings = load_settings(path)

    qwen = settings.models["qwen"]
    assert isinstance(qwen, OpenAIModelConfig)
    assert qwen.api_key is not None
    assert qwen.api_key.get_secret_value() == SECRET
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert SECRET not in settings.model_dump_json()


# ---- the registry --------------------------------------------------------------------


def test_unknown_model_error_lists_the_configured_models(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path / "conf.yaml", QWEN_YAML))

    with pytest.raises(ConfigError) as caught:
        resolve_model("gpt-x", settings)

    assert str(caught.value) == (
        "model 'gpt-x' is not configured; configured models: local, qwen-plus"
    )


def test_missing_api_key_variable_is_named_in_the_error(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path / "conf.yaml", QWEN_YAML))

    with pytest.raises(ConfigError, match="environment variable DASHSCOPE_API_KEY is not set"):
        resolve_model("qwen-plus", settings)


def test_openai_model_is_built_with_its_name_and_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", SECRET)
    settings = load_settings(write(tmp_path / "conf.yaml", QWEN_YAML))

    model = resolve_model("qwen-plus", settings)

    assert model.name == "qwen-plus"
    assert SECRET not in repr(model)


def test_resolve_model_loads_settings_when_none_are_given(isolated: Path) -> None:
    write(isolated / "agentguild.yaml", "models:\n  demo: {provider: scripted, replies: [hi]}\n")

    model = resolve_model("demo")

    assert isinstance(model, ScriptedModel)
    assert model.name == "demo"


async def test_scripted_model_replies_in_order_with_text_and_tool_calls() -> None:
    config = ScriptedModelConfig(
        provider="scripted",
        replies=["first", {"tool": "calculator", "arguments": {"expression": "1+1"}}],  # type: ignore[list-item]
    )
    model = build_model(config, name="demo")
    request = ChatRequest(messages=[Message.user("hi")])

    first = await model.complete(request)
    second = await model.complete(request)
    third = await model.complete(request)  # cycles by default

    assert first.message.text == "first"
    (call,) = second.message.tool_calls
    assert (call.name, call.arguments) == ("calculator", '{"expression":"1+1"}')
    assert third.message.text == "first"


def test_local_model_without_llama_cpp_explains_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "local_model_available", lambda: False)

    with pytest.raises(LocalModelUnavailableError, match=r"pip install 'agentguild\[local\]'"):
        resolve_model("local", Settings())


def test_malformed_json_in_an_environment_variable_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTGUILD_MODELS", "{not json")

    with pytest.raises(ConfigError, match=r'invalid configuration in the environment: .*"models"'):
        load_settings()


def test_the_example_config_file_is_valid() -> None:
    example = Path(__file__).parents[2] / "agentguild.example.yaml"

    settings = load_settings(example)

    assert {"local", "qwen-plus", "gpt-4o-mini", "vllm", "ollama", "demo"} <= set(settings.models)
