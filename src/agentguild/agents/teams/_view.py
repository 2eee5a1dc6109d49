"""How a team's conversation is shown to a member, and to a model choosing a speaker."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import AsyncIterator, Iterable, Sequence

from ...types import Event, Message
from ..base import Agent, MessagesInput

_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def member_view(transcript: Sequence[Message], member: str) -> list[Message]:
    """The team conversation as `member` sees it.

    Its own earlier messages stay assistant turns; other members' messages become user
    messages carrying the speaker's name. System messages are left out (each member has its
    own system prompt), and so are tool traffic and tool calls: those belong to the member
    that made them.
    """
    view: list[Message] = []
    for message in transcript:
        if message.role in ("system", "tool"):
            continue
        if message.role == "assistant":
            if not message.text:
                continue
            if message.name is None or message.name == member:
                view.append(Message.assistant(message.text, name=message.name))
            else:
                view.append(Message.user(message.text, name=message.name))
        else:
            view.append(message)
    return view


def render_history(transcript: Sequence[Message], *, max_chars: int = 6000) -> str:
    """The conversation as `speaker: text` lines, for a model choosing who speaks next.

    When it is longer than `max_chars`, the oldest lines are dropped (the task, the first
    line, is always kept).
    """
    lines = [
        f"{message.name or message.role}: {message.text.strip()}"
        for message in transcript
        if message.role in ("user", "assistant") and message.text.strip()
    ]
    if not lines:
        return "(no messages yet)"
    head, tail = lines[0], lines[1:]
    kept: list[str] = []
    budget = max_chars - len(head)
    for line in reversed(tail):
        budget -= len(line) + 1
        if budget < 0:
            kept.append("...")
            break
        kept.append(line)
    return "\n".join([head, *reversed(kept)])


def mentioned(text: str, names: Iterable[str], *, at_sign: bool = False) -> list[str]:
    """The `names` that `text` mentions (as whole words, case-insensitively), in the order
    of their first mention; with `at_sign`, only `@name` mentions count."""
    found: list[tuple[int, str]] = []
    for name in names:
        prefix = "@" if at_sign else r"(?<![\w@-])"
        match = re.search(prefix + re.escape(name) + r"(?![\w-])", text, re.IGNORECASE)
        if match is not None:
            found.append((match.start(), name))
    return [name for _, name in sorted(found)]


def tool_name(name: str) -> str:
    """`name` made valid as a tool name (letters, digits, '_' and '-', at most 64)."""
    return (_NAME.sub("_", name).strip("_") or "agent")[:64]


def run_agent(
    agent: Agent, messages: MessagesInput, *, stream: bool | None
) -> AsyncIterator[Event]:
    """`agent.run(messages)`, passing `stream` on when it is set and the agent takes it."""
    if stream is not None and _takes_stream(type(agent)):
        return agent.run(messages, stream=stream)  # type: ignore[call-arg]
    return agent.run(messages)


@functools.cache
def _takes_stream(kind: type) -> bool:
    try:
        return "stream" in inspect.signature(kind.run).parameters  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        return False
