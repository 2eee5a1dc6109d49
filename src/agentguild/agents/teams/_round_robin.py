"""`RoundRobinTeam`: members speak in a fixed order, turn after turn."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from ...types import Event
from ..base import Agent
from ..termination import Termination
from ._base import Selection, Team, TurnOutcome, last_member
from ._state import TeamState


class RoundRobinTeam(Team):
    """Members take turns in order, each seeing the whole conversation so far.

    The expert team of the brief: `RoundRobinTeam([researcher, writer, reviewer])`. The run
    stops when `termination` fires or after `max_turns` member turns. Without either, one
    round is made (each member speaks once); with a termination but no `max_turns`, at most
    100 turns. A later run on the same state continues the rotation where it stopped.
    """

    def __init__(
        self,
        members: Iterable[Agent],
        *,
        name: str = "round_robin",
        description: str = "",
        termination: Termination | None = None,
        max_turns: int | None = None,
    ) -> None:
        members = list(members)
        self.one_round = termination is None and max_turns is None
        """No limit was given: the run ends (completed) once every member has spoken."""
        if max_turns is None:
            max_turns = len(members) if termination is None else 100
        super().__init__(
            members,
            name=name,
            description=description,
            termination=termination,
            max_turns=max_turns,
        )

    async def _select(self, state: TeamState) -> AsyncIterator[Event | Selection]:
        names = list(self.members)
        last = last_member(state.transcript, names)
        following = names[(names.index(last) + 1) % len(names)] if last is not None else names[0]
        yield Selection((following,), "round robin")

    def _after_turn(self, state: TeamState, outcome: TurnOutcome) -> bool:
        return self.one_round and state.run_turns >= len(self.members)
