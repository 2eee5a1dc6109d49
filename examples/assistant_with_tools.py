"""An assistant with two tools, streamed to the terminal.

Run it on the bundled local model, on a configured model (`--model qwen-plus`), or on any
OpenAI-compatible endpoint (`--base-url http://localhost:11434/v1 --model llama3.2`).
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

from agentguild import Assistant, TextDelta, ToolCallEvent, ToolResultEvent, tool
from agentguild.llm import ChatModel, OpenAICompatModel
from agentguild.tools.builtin import calculator


@tool
def utc_now() -> str:
    """The current date and time in UTC (ISO 8601)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def pick_model(args: argparse.Namespace) -> ChatModel | str:
    if args.base_url:
        return OpenAICompatModel(args.model or "default", base_url=args.base_url)
    return args.model or "local"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a configured model name (default: local)")
    parser.add_argument("--base-url", help="an OpenAI-compatible endpoint instead")
    parser.add_argument("question", nargs="?", default="What is 12.5 * 7?")
    args = parser.parse_args()

    agent = Assistant(
        pick_model(args),
        system_prompt="You are a precise assistant. Use the calculator for arithmetic.",
        tools=[calculator, utc_now],
    )
    async for event in agent.run(args.question, stream=True):
        if isinstance(event, TextDelta):
            print(event.text, end="", flush=True)
        elif isinstance(event, ToolCallEvent):
            print(f"[calling {event.call.name}({event.call.arguments})]")
        elif isinstance(event, ToolResultEvent):
            print(f"[{event.result.call.name} -> {event.result.content}]")
    print()


if __name__ == "__main__":
    asyncio.run(main())
