"""The `Agent` protocol: anything that turns a conversation into a stream of events."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

from ..errors import AgentguildError
from ..types import Event, Message, RunResult

MessagesInput: TypeAlias = "str | Message | Sequence[Message | Mapping[str, Any]]"
"""What a run accepts: a user's text, one message, or a conversation (messages or
OpenAI-format dicts)."""


@runtime_checkable
class Agent(Protocol):
    """An agent (or a team): `run()` yields events and ends with a `RunResult`."""

    @property
    def name(self) -> str: ...

    def run(self, messages: MessagesInput) -> AsyncIterator[Event]: ...


def to_messages(messages: MessagesInput) -> list[Message]:
    """Normalise a run's input to a list of messages."""
    if isinstance(messages, str):
        return [Message.user(messages)]
    if isinstance(messages, Message):
        return [messages]
    return [m if isinstance(m, Message) else Message.from_openai(m) for m in messages]


async def final_result(events: AsyncIterator[Event]) -> RunResult:
    """Consume a run's events and return its `RunResult`."""
    result: RunResult | None = None
    async for event in events:
        if isinstance(event, RunResult):
            result = event
    if result is None:
        raise AgentguildError("the run ended without a RunResult")
    return result


_runners = threading.local()


def run_sync(events: AsyncIterator[Event]) -> RunResult:
    """Drive a run to completion from synchronous code (scripts, notebooks' sync cells).

    Each calling thread keeps one event loop across calls, so models' connection pools
    stay valid and warm between `run_sync` calls.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        runner: asyncio.Runner | None = getattr(_runners, "runner", None)
        if runner is None:
            runner = _runners.runner = asyncio.Runner()
        return runner.run(final_result(events))
    raise AgentguildError(
        "run_sync() was called inside a running event loop; use `await agent.result(...)` "
        "or `async for event in agent.run(...)` there"
    )
