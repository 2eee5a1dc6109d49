"""`Swarm`: members hand the conversation to each other with `transfer_to_<name>` tools."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping

import orjson

from ...tools.base import Tool
from ...types import (
    Event,
    HandoffEvent,
    Message,
    MessageEvent,
    RunResult,
    ToolCall,
    ToolResultEvent,
    Usage,
    UsageEvent,
)
from ..assistant import Assistant
from ..base import Agent
from ..termination import Termination
from ._base import Selection, Team, TurnOutcome
from ._choose import description_of
from ._state import TeamState
from ._streams import aclose
from ._view import run_agent, tool_name

USER = "user"
"""The handoff target that hands the conversation back to the user."""


class Swarm(Team):
    """Members pass the conversation along with handoff tools, and the one holding it answers.

    Each `Assistant` member gets a `transfer_to_<name>` tool for every member it may hand
    off to (`handoffs[name]`, default: all the others), plus `transfer_to_user` when
    `user_handoff` is on. The first member starts. A handoff ends the member's turn as
    soon as the transfer tool has answered; the target continues with the whole
    conversation. A member that answers without handing off ends the run with its answer
    and stays active: the next run on the same state (the user's reply) goes to it. A
    handoff to the user ends the run the same way, with the member that asked waiting for
    the answer (pair it with `HandoffTermination()` to see it as a termination reason).
    Members that are not `Assistant`s take part but cannot hand off.
    """

    def __init__(
        self,
        members: Iterable[Agent],
        *,
        name: str = "swarm",
        description: str = "",
        handoffs: Mapping[str, Iterable[str]] | None = None,
        user_handoff: bool = False,
        termination: Termination | None = None,
        max_turns: int = 10,
        descriptions: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            members,
            name=name,
            description=description,
            termination=termination,
            max_turns=max_turns,
        )
        if USER in self.members:
            raise ValueError(f"{USER!r} is reserved in a swarm: it hands off to the user")
        unknown = set(handoffs or {}) - set(self.members)
        if unknown:
            raise ValueError(f"handoffs name non-members {sorted(unknown)}")
        self.descriptions = {
            member: (descriptions or {}).get(member) or description_of(agent)
            for member, agent in self.members.items()
        }
        self.handoffs: dict[str, tuple[str, ...]] = {}
        """Who each member may hand off to."""
        self._transfers: dict[str, dict[str, str]] = {}
        self._runners: dict[str, Agent] = {}
        for member, agent in self.members.items():
            targets = self._targets(member, handoffs, user_handoff)
            self.handoffs[member] = targets
            tools = {_transfer_name(target): target for target in targets}
            self._transfers[member] = tools
            self._runners[member] = self._with_transfers(agent, tools)

    def _targets(
        self, member: str, handoffs: Mapping[str, Iterable[str]] | None, user_handoff: bool
    ) -> tuple[str, ...]:
        if handoffs is not None and member in handoffs:
            targets = list(dict.fromkeys(handoffs[member]))
        else:
            targets = [other for other in self.members if other != member]
        bad = [t for t in targets if t not in self.members and t != USER]
        if bad:
            raise ValueError(f"{member!r} hands off to non-members {bad}")
        if user_handoff and USER not in targets:
            targets.append(USER)
        return tuple(targets)

    def _with_transfers(self, agent: Agent, tools: Mapping[str, str]) -> Agent:
        if not tools or not isinstance(agent, Assistant):
            return agent
        transfers = [
            _transfer_tool(name, target, self.descriptions) for name, target in tools.items()
        ]
        return _with_tools(agent, transfers)

    async def _select(self, state: TeamState) -> AsyncIterator[Event | Selection]:
        yield Selection((next(iter(self.members)),), "start")

    async def _member_events(
        self, name: str, messages: list[Message], stream: bool | None
    ) -> AsyncIterator[Event]:
        """The member's events, cut short right after a transfer tool has answered."""
        events = run_agent(self._runners[name], messages, stream=stream)
        transfers = self._transfers[name]
        produced: list[Message] = []
        usage, calls = Usage(), 0
        waiting: set[str] = set()
        handoff: HandoffEvent | None = None
        try:
            async for event in events:
                yield event
                if isinstance(event, RunResult) or event.agent != name:
                    continue
                if isinstance(event, UsageEvent):
                    usage, calls = usage + event.usage, calls + 1
                elif isinstance(event, ToolResultEvent):
                    if handoff is not None and _failed_transfer(event, transfers, handoff):
                        handoff = None  # the model sees the error and may try again
                elif isinstance(event, MessageEvent):
                    message = event.message
                    produced.append(message)
                    if message.tool_calls:
                        waiting = {call.id for call in message.tool_calls}
                        handoff = self._handoff(name, message, transfers)
                    elif message.tool_call_id is not None:
                        waiting.discard(message.tool_call_id)
                    if handoff is not None and not waiting:
                        yield handoff
                        yield RunResult(name, tuple(produced), usage, "completed", calls)
                        return
        finally:
            await aclose(events)

    def _handoff(
        self, name: str, message: Message, transfers: Mapping[str, str]
    ) -> HandoffEvent | None:
        for call in message.tool_calls:
            target = transfers.get(call.name)
            if target is not None:
                return HandoffEvent(name, target, self.name, message.text or _reason(call))
        return None

    def _reply(self, name: str, outcome: TurnOutcome) -> Message:
        result = outcome.results[name]
        handoff = next((h for h in outcome.handoffs if h.source == name), None)
        if handoff is None:
            return Message.assistant(result.output, name=name)
        return Message.assistant(result.output or f"Transferring to {handoff.target}.", name=name)

    def _after_turn(self, state: TeamState, outcome: TurnOutcome) -> bool:
        speaker = outcome.speakers[0]
        handoff = next((h for h in outcome.handoffs if h.source == speaker), None)
        if handoff is None:
            state.next_speakers, state.selection_reason = [speaker], "active"
            return True
        if handoff.target == USER:
            state.next_speakers, state.selection_reason = [speaker], "answering the user"
            return True
        state.next_speakers, state.selection_reason = [handoff.target], "handoff"
        return False


def _failed_transfer(
    event: ToolResultEvent, transfers: Mapping[str, str], handoff: HandoffEvent
) -> bool:
    return event.result.is_error and transfers.get(event.result.call.name) == handoff.target


def _reason(call: ToolCall) -> str:
    try:
        arguments = orjson.loads(call.arguments or "{}")
    except orjson.JSONDecodeError:
        return ""
    reason = arguments.get("reason") if isinstance(arguments, dict) else None
    return reason if isinstance(reason, str) else ""


def _transfer_name(target: str) -> str:
    return f"transfer_to_{tool_name(target)}"[:64]


def _transfer_tool(name: str, target: str, descriptions: Mapping[str, str]) -> Tool:
    async def transfer(reason: str = "") -> str:
        """Hand the conversation over.

        Args:
            reason: why, in a few words, for the one taking over
        """
        return f"Transferred to {target}." + (f" Reason: {reason}" if reason else "")

    if target == USER:
        what = "Hand the conversation back to the user, to answer a question or confirm."
    else:
        role = descriptions.get(target)
        what = f"Hand the conversation over to {target}" + (f" ({role})." if role else ".")
    return Tool(transfer, name=name, description=what)


def _with_tools(agent: Assistant, extra: list[Tool]) -> Assistant:
    """A copy of `agent` with `extra` tools added."""
    return agent.with_tools(*extra)
