"""Teams: several agents working on one conversation, each team itself an `Agent`.

- `RoundRobinTeam`: members speak in turn (the expert team: researcher, writer, reviewer);
- `SelectorTeam`: a model picks the next speaker(s) (group chat);
- `RouterAgent`: one routing decision, then the chosen specialist answers;
- `Swarm`: members hand off to each other with `transfer_to_<name>` tools.

Teams hold only configuration: one instance runs many times, concurrently. A run's state
is a `TeamState`, which serialises to JSON and resumes. Runs stop on the conditions of
`agentguild.agents.termination`.
"""

from ._base import Selection, Team, TurnOutcome
from ._choose import ROUTER_PROMPT, SELECTOR_PROMPT
from ._round_robin import RoundRobinTeam
from ._router import RouterAgent
from ._selector import CandidateFilter, SelectorTeam
from ._state import TeamState, TeamStateError
from ._swarm import USER, Swarm

__all__ = [
    "ROUTER_PROMPT",
    "SELECTOR_PROMPT",
    "USER",
    "CandidateFilter",
    "RoundRobinTeam",
    "RouterAgent",
    "Selection",
    "SelectorTeam",
    "Swarm",
    "Team",
    "TeamState",
    "TeamStateError",
    "TurnOutcome",
]
