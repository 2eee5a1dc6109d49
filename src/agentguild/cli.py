"""The `agentguild` command: chat with an agent, run one prompt, list the models.

Heavy modules (pydantic settings, agents, model clients, llama.cpp) are imported inside the
commands, so `agentguild --help` answers at once.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from .errors import AgentguildError, ConfigError
from .types import RunResult

if TYPE_CHECKING:
    from .agents import Agent, Assistant

app = typer.Typer(
    name="agentguild",
    help="LLM agents, tools and teams: offline on a laptop or against any OpenAI-compatible API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_ERROR = 1
"""A run failed (the model or a tool errored)."""
EXIT_CONFIG = 2
"""The configuration or the command line is wrong (same code as a usage error)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C stopped a one-shot run (the shell convention, 128 + SIGINT)."""

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Configured model to use (see `agentguild models`).",
        show_default=False,
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Config file (YAML or TOML). Default: $AGENTGUILD_CONFIG, else ./agentguild.yaml.",
        show_default=False,
        dir_okay=False,
    ),
]
SystemOption = Annotated[
    str | None, typer.Option("--system", help="System prompt for the agent.", show_default=False)
]
NoToolsOption = Annotated[
    bool, typer.Option("--no-tools", help="Don't give the agent the built-in calculator.")
]


@dataclass(frozen=True, slots=True)
class _Globals:
    model: str | None = None
    config: Path | None = None


@app.callback()
def _global_options(
    ctx: typer.Context, model: ModelOption = None, config: ConfigOption = None
) -> None:
    ctx.obj = _Globals(model, config)


@app.command()
def chat(
    ctx: typer.Context,
    model: ModelOption = None,
    system: SystemOption = None,
    no_tools: NoToolsOption = False,
) -> None:
    """Chat with an agent: answers stream live, tool calls show as they happen.

    Type /help for commands; Ctrl-C stops an answer, Ctrl-D (or /exit) quits. Reads plain
    lines when standard input is not a terminal.
    """
    from ._cli.chat import ChatSession, stdin_reader

    console, err = Console(), Console(stderr=True)
    with _reporting_errors(err):
        agent = _agent(ctx, model=model, system=system, tools=not no_tools)
        read_line, interactive = stdin_reader(console)
        ChatSession(agent, console, read_line, interactive=interactive, status=err).run()


@app.command()
def run(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="The prompt; '-' reads it from standard input.")],
    model: ModelOption = None,
    system: SystemOption = None,
    no_tools: NoToolsOption = False,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print the run result as JSON (output, messages, usage, ...)."),
    ] = False,
    team: Annotated[
        Path | None,
        typer.Option(
            "--team",
            help="Run the agent or team a YAML spec describes (see docs/teams.md).",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Run one prompt and print the answer (tool activity goes to stderr)."""
    from ._cli.render import EventRenderer
    from ._cli.session import run_once

    console, err = Console(), Console(stderr=True)
    text = sys.stdin.read() if prompt == "-" else prompt
    with _reporting_errors(err):
        agent = (
            _team(ctx, team, model=model)
            if team is not None
            else _agent(ctx, model=model, system=system, tools=not no_tools)
        )
        renderer = None if json_output else EventRenderer(console, err)
        try:
            result = run_once(agent, text, renderer, stream=not json_output, status=err)
        except KeyboardInterrupt:
            err.print("(cancelled)", style="dim", highlight=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except AgentguildError:
            if renderer is not None and renderer.errors:
                raise typer.Exit(EXIT_ERROR) from None  # already shown as it happened
            raise
        if json_output:
            payload = json.dumps(_result_json(result), ensure_ascii=False, indent=2)
            console.out(payload, highlight=False)


@app.command()
def models(ctx: typer.Context) -> None:
    """List the configured models (API keys are never shown, only where they come from)."""
    from ._cli.models import models_table
    from ._cli.session import AgentOptions, load_settings

    console, err = Console(), Console(stderr=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 200  # piped: don't fold URLs at 80 columns; the table stays compact
    with _reporting_errors(err):
        settings = load_settings(AgentOptions(config=_globals(ctx).config))
        console.print(models_table(settings))


def _register_server_commands() -> None:
    from ._cli.serve import db_app, serve
    from ._cli.worker import worker

    app.command()(serve)
    app.command()(worker)
    app.add_typer(db_app, name="db")


_register_server_commands()


def main() -> None:
    """Entry point of the `agentguild` console script."""
    app(prog_name="agentguild")


# ---- helpers -------------------------------------------------------------------------


def _globals(ctx: typer.Context) -> _Globals:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, _Globals) else _Globals()


def _agent(ctx: typer.Context, *, model: str | None, system: str | None, tools: bool) -> Assistant:
    from ._cli.session import AgentOptions, build_agent, load_settings

    shared = _globals(ctx)
    options = AgentOptions(
        model=model or shared.model, config=shared.config, system=system, tools=tools
    )
    return build_agent(load_settings(options), options)


def _team(ctx: typer.Context, team: Path, *, model: str | None) -> Agent:
    from ._cli.session import AgentOptions, build_spec_agent, load_settings

    shared = _globals(ctx)
    options = AgentOptions(config=shared.config)
    return build_spec_agent(load_settings(options), team, model or shared.model)


@contextmanager
def _reporting_errors(err: Console) -> Iterator[None]:
    """Turn agentguild errors into a message on stderr and an exit code."""
    try:
        yield
    except ConfigError as exc:
        err.print(Text(f"error: {exc}", style="bold red"), soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from None
    except AgentguildError as exc:
        err.print(Text(f"error: {exc}", style="bold red"), soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None


def _result_json(result: RunResult) -> dict[str, object]:
    usage = result.usage
    return {
        "agent": result.agent,
        "output": result.output,
        "messages": [message.to_openai() for message in result.messages],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
        "stop_reason": result.stop_reason,
        "turns": result.turns,
    }
