"""Asking a model which member(s) should speak next (selector teams and routers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...llm.base import ChatModel, ChatRequest
from ...types import Message, UsageEvent
from ._view import mentioned, render_history

SELECTOR_PROMPT = """You choose who speaks next in a team conversation.

Team members:
{roles}

Read the conversation, then decide which member should speak next{several}.
Answer with the member's name only."""
"""The default selector prompt; `{roles}` lists the members as `name: description`,
`{participants}` their names, and `{several}` says whether several may be named."""

ROUTER_PROMPT = """You route a request to the one specialist best able to answer it.

Specialists:
{roles}

Answer with the specialist's name only."""
"""The default routing prompt (same placeholders as `SELECTOR_PROMPT`)."""


@dataclass(frozen=True, slots=True)
class Choice:
    """The names a model's answer mentions (in order), and the answer itself."""

    names: tuple[str, ...]
    answer: str


async def ask_model(
    model: ChatModel,
    *,
    prompt: str,
    transcript: Sequence[Message],
    candidates: Sequence[str],
    descriptions: Mapping[str, str],
    several: bool,
    agent: str,
    params: Mapping[str, Any],
) -> AsyncIterator[UsageEvent | Choice]:
    """Ask `model` to choose among `candidates`; yield its usage, then the `Choice`."""
    roles = "\n".join(f"- {name}: {descriptions.get(name) or name}" for name in candidates)
    system = prompt.format(
        roles=roles,
        participants=", ".join(candidates),
        several=" (name several, separated by commas, if they should work in parallel)"
        if several
        else "",
    )
    question = (
        f"Conversation so far:\n{render_history(transcript)}\n\n"
        f"Who should speak next? Choose from: {', '.join(candidates)}."
    )
    request = ChatRequest(messages=(Message.system(system), Message.user(question)), **params)
    response = await model.complete(request)
    yield UsageEvent(response.usage, model.name, agent)
    answer = response.message.text
    yield Choice(tuple(mentioned(answer, candidates)), answer)


def description_of(agent: object) -> str:
    """An agent's `description` attribute, if it has a non-empty one."""
    description = getattr(agent, "description", None)
    return description if isinstance(description, str) else ""


def resolve(model: ChatModel | str) -> ChatModel:
    """A model, or the configured model of that name."""
    if not isinstance(model, str):
        return model
    from ...llm.registry import resolve_model

    return resolve_model(model)
