"""`RouterAgent`: one routing decision, then the chosen specialist answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from ...llm.base import ChatModel
from ...types import Event
from ..base import Agent
from ._base import Selection, Team, TurnOutcome
from ._choose import ROUTER_PROMPT, Choice, ask_model, description_of, resolve
from ._state import TeamState
from ._view import mentioned


class RouterAgent(Team):
    """Routes each request to the one specialist best suited to it, which then answers.

    A model reads the specialists' descriptions (`descriptions`, else each specialist's
    own `description`) and the conversation, and names one; `@name` in the last message
    routes directly. An answer naming no specialist goes to `default` (else the first
    specialist). The run's events are the routing decision (`SpeakerSelected`) and the
    specialist's own events.
    """

    def __init__(
        self,
        specialists: Iterable[Agent],
        model: ChatModel | str,
        *,
        name: str = "router",
        description: str = "",
        descriptions: Mapping[str, str] | None = None,
        routing_prompt: str = ROUTER_PROMPT,
        default: str | None = None,
        model_params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(specialists, name=name, description=description, max_turns=1)
        if default is not None and default not in self.members:
            raise ValueError(f"default specialist {default!r} is not one of {list(self.members)}")
        self.model: ChatModel = resolve(model)
        self.descriptions = {
            member: (descriptions or {}).get(member) or description_of(agent)
            for member, agent in self.members.items()
        }
        """Each specialist's description, as the routing model sees it."""
        self.routing_prompt = routing_prompt
        self.default = default
        self.model_params = dict(model_params or {})
        """Generation parameters of the routing call (temperature, max_tokens, ...)."""

    async def _select(self, state: TeamState) -> AsyncIterator[Event | Selection]:
        names = list(self.members)
        transcript = state.transcript
        named = mentioned(transcript[-1].text, names, at_sign=True) if transcript else []
        if named:
            yield Selection((named[0],), "mention")
            return
        if len(names) == 1:
            yield Selection((names[0],), "only specialist")
            return
        choice: Choice | None = None
        async for item in ask_model(
            self.model,
            prompt=self.routing_prompt,
            transcript=transcript,
            candidates=names,
            descriptions=self.descriptions,
            several=False,
            agent=self.name,
            params=self.model_params,
        ):
            if isinstance(item, Choice):
                choice = item
            else:
                yield item
        if choice is not None and choice.names:
            yield Selection((choice.names[0],), "router")
            return
        answer = choice.answer if choice is not None else ""
        fallback = self.default or names[0]
        yield Selection((fallback,), f"fallback (router said {answer[:60]!r})")

    def _after_turn(self, state: TeamState, outcome: TurnOutcome) -> bool:
        return True
