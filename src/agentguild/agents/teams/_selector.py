"""`SelectorTeam`: a model picks who speaks next, from the members' descriptions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

from ...llm.base import ChatModel
from ...types import Event, Message
from ..base import Agent
from ..termination import Termination
from ._base import Selection, Team, last_member
from ._choose import SELECTOR_PROMPT, Choice, ask_model, description_of, resolve
from ._state import TeamState
from ._view import mentioned

CandidateFilter = Callable[[Sequence[Message]], Iterable[str]]
"""Given the conversation, the names of the members allowed to speak next."""


class SelectorTeam(Team):
    """A group chat where a model chooses the next speaker after every turn.

    The selector model sees each member's description (`descriptions`, else the member's
    own `description`) and the conversation, and answers with a name. Before asking it:

    - `candidates(transcript)` may narrow who can speak (one candidate: no model call);
    - unless `allow_repeated_speaker`, the last speaker is not a candidate;
    - `@name` in the last message picks that member directly (the mention overrides the
      model).

    With `parallel=True`, when the selector (or a message's mentions) names several
    members, up to `max_parallel` of them speak at once on the same conversation; their
    events interleave and their messages join the conversation in the order named. An
    answer naming no member falls back to the next member in order.
    """

    def __init__(
        self,
        members: Iterable[Agent],
        model: ChatModel | str,
        *,
        name: str = "selector",
        description: str = "",
        termination: Termination | None = None,
        max_turns: int = 20,
        descriptions: Mapping[str, str] | None = None,
        selector_prompt: str = SELECTOR_PROMPT,
        candidates: CandidateFilter | None = None,
        allow_repeated_speaker: bool = False,
        parallel: bool = False,
        max_parallel: int = 3,
        model_params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            members,
            name=name,
            description=description,
            termination=termination,
            max_turns=max_turns,
        )
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        self.model: ChatModel = resolve(model)
        self.descriptions = {
            member: (descriptions or {}).get(member) or description_of(agent)
            for member, agent in self.members.items()
        }
        """Each member's description, as the selector sees it."""
        self.selector_prompt = selector_prompt
        self.candidates = candidates
        self.allow_repeated_speaker = allow_repeated_speaker
        self.parallel = parallel
        self.max_parallel = max_parallel
        self.model_params = dict(model_params or {})
        """Generation parameters of the selector's calls (temperature, max_tokens, ...)."""

    async def _select(self, state: TeamState) -> AsyncIterator[Event | Selection]:
        transcript = state.transcript
        names = list(self.members)
        last = last_member(transcript, names)
        pool = self._candidates(transcript)
        if not self.allow_repeated_speaker and last in pool and len(pool) > 1:
            pool.remove(last)
        if not pool:
            yield Selection((), "no member may speak next")
            return
        limit = self.max_parallel if self.parallel else 1
        named = mentioned(transcript[-1].text, pool, at_sign=True) if transcript else []
        if named:
            yield Selection(tuple(named[:limit]), "mention")
            return
        if len(pool) == 1:
            yield Selection((pool[0],), "candidates")
            return
        choice: Choice | None = None
        async for item in ask_model(
            self.model,
            prompt=self.selector_prompt,
            transcript=transcript,
            candidates=pool,
            descriptions=self.descriptions,
            several=self.parallel,
            agent=self.name,
            params=self.model_params,
        ):
            if isinstance(item, Choice):
                choice = item
            else:
                yield item
        if choice is not None and choice.names:
            yield Selection(choice.names[:limit], "selector")
            return
        answer = choice.answer if choice is not None else ""
        yield Selection((_after(last, pool, names),), f"fallback (selector said {answer[:60]!r})")

    def _candidates(self, transcript: Sequence[Message]) -> list[str]:
        if self.candidates is None:
            return list(self.members)
        allowed = list(dict.fromkeys(self.candidates(transcript)))
        unknown = [name for name in allowed if name not in self.members]
        if unknown:
            raise ValueError(
                f"candidate filter of team {self.name!r} named non-members {unknown}; "
                f"members: {list(self.members)}"
            )
        return allowed


def _after(last: str | None, pool: Sequence[str], order: Sequence[str]) -> str:
    """The first member of `pool` after `last` in `order` (wrapping around)."""
    start = order.index(last) + 1 if last in order else 0
    rotated = [*order[start:], *order[:start]]
    return next(name for name in rotated if name in pool)
