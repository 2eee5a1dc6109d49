"""Builds the CLI's agent from settings and options, and drives its runs."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from .._aio import aclose
from ..errors import AgentguildError
from ..types import Message, RunResult
from .render import EventRenderer

if TYPE_CHECKING:
    from ..agents import Agent, Assistant
    from ..config import Settings
    from ..llm.base import ChatModel
    from ..tools import Tool


@dataclass(frozen=True, slots=True)
class AgentOptions:
    """What the command line says about the agent to build."""

    model: str | None = None
    """The configured model to use; None means the settings' `default_model`."""
    config: Path | None = None
    """The config file named with `--config`."""
    system: str | None = None
    """A system prompt overriding the configured one."""
    tools: bool = True
    """Give the agent the built-in tools (the calculator)."""


def load_settings(options: AgentOptions) -> Settings:
    """The settings, from the config file named in `options` (or the usual places)."""
    from ..config import load_settings as load

    return load(options.config)


def build_spec_agent(settings: Settings, team: Path, model: str | None) -> Agent:
    """The agent or team the `--team` spec file describes (`model` overrides its models)."""
    from ..agents.spec import load_agent_spec

    return load_agent_spec(team, settings=settings, model=model)


def build_agent(settings: Settings, options: AgentOptions) -> Assistant:
    """The assistant the CLI talks to, as the settings and command line describe it."""
    from ..agents import Assistant
    from ..llm.stack import Gateway

    # The configured gateway stack: fallbacks, retries, cache, limits and prices apply here
    # exactly as on the server.
    model = Gateway(settings).model(options.model or settings.default_model)
    tools: list[Tool] = []
    if options.tools:
        from ..tools.builtin import calculator

        tools.append(calculator)
    return Assistant(
        model,
        system_prompt=options.system or settings.agent.system_prompt,
        tools=tools,
        max_turns=settings.agent.max_turns,
        stream=True,
    )


async def load_model(model: ChatModel, status: Console) -> None:
    """Load a local model's weights now, saying so; other models need no loading.

    The local model otherwise loads on its first request, which would look like a hang.
    """
    # If agentguild.llm.local was never imported, no model can be a LocalModel.
    local = sys.modules.get("agentguild.llm.local")
    if local is None:
        return
    for leaf in _clients(model):
        if not isinstance(leaf, local.LocalModel):
            continue
        if status.is_terminal:
            with status.status("loading local model…"):
                await leaf.load()
        else:
            status.print("loading local model…", style="dim")
            await leaf.load()


async def answer(
    agent: Agent,
    messages: Sequence[Message],
    renderer: EventRenderer | None,
    *,
    stream: bool = True,
) -> RunResult:
    """Run the agent once, showing its events with `renderer`, and return the result.

    If the run is cancelled (Ctrl-C), the event stream is closed before the
    cancellation propagates, so the agent cleans up its model call and tools.
    """
    result: RunResult | None = None
    events = agent.run(messages, stream=stream)  # type: ignore[call-arg]
    try:
        async for event in events:
            if renderer is not None:
                renderer.handle(event)
            if isinstance(event, RunResult):
                result = event
    finally:
        await aclose(events)
        if renderer is not None:
            renderer.end_line()
    if result is None:
        raise AgentguildError("the run ended without a result")
    return result


def run_once(
    agent: Agent,
    prompt: str,
    renderer: EventRenderer | None,
    *,
    stream: bool,
    status: Console,
) -> RunResult:
    """Run the agent on one user message in a fresh event loop, then release the model."""

    model: ChatModel | None = getattr(agent, "model", None)  # teams have several

    async def once() -> RunResult:
        try:
            if model is not None:
                await load_model(model, status)
            return await answer(agent, [Message.user(prompt)], renderer, stream=stream)
        finally:
            if model is not None:
                await close_model(model)

    return asyncio.run(once())


async def close_model(model: ChatModel) -> None:
    """Release the model's resources (connection pools) if it holds any."""
    # Not part of the ChatModel protocol: only clients with pools (HTTP) have `aclose`.
    for client in _clients(model):
        aclose = getattr(client, "aclose", None)
        if aclose is not None:
            await aclose()


def _clients(model: ChatModel) -> list[ChatModel]:
    """The provider clients inside a stack of wrappers (through `inner` and routers)."""
    found: list[ChatModel] = []
    pending = [model]
    while pending:
        current = pending.pop()
        inner = getattr(current, "inner", None)
        deployments = getattr(current, "deployments", None)
        if inner is not None:
            pending.append(inner)
        elif deployments is not None:
            pending.extend(deployment.model for deployment in deployments)
        else:
            found.append(current)
    return found
