"""The run loop every team shares: select speakers, run them, commit, check termination."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

from ...errors import AgentguildError
from ...types import (
    Event,
    HandoffEvent,
    Message,
    MessageEvent,
    RunResult,
    SpeakerSelected,
    StopReason,
    TerminationEvent,
    Usage,
    UsageEvent,
)
from ..base import Agent, MessagesInput, final_result, run_sync, to_messages
from ..termination import ExternalStop, Fired, Termination, TerminationState, _AnyState
from ._state import TeamState
from ._streams import Interrupted, Watch, interleave
from ._view import member_view, run_agent

_MEMBER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class Selection:
    """Who speaks next, and why; no speakers ends the run."""

    speakers: tuple[str, ...]
    reason: str


@dataclass(slots=True)
class TurnOutcome:
    """What one turn produced: each speaker's result, the tokens spent, any handoffs."""

    speakers: tuple[str, ...]
    results: dict[str, RunResult] = field(default_factory=dict)
    usage: list[UsageEvent] = field(default_factory=list)
    handoffs: list[HandoffEvent] = field(default_factory=list)


class Team(ABC):
    """Base of the teams: a named group of member agents, itself an `Agent`.

    A team holds only configuration, so one instance can run many times, concurrently.
    Each run's state is a `TeamState` (pass your own to keep, inspect, save or resume it).
    Subclasses decide who speaks (`_select`), and may adapt how a member runs
    (`_member_events`), what it adds to the conversation (`_reply`) and when the run is
    done (`_after_turn`).
    """

    def __init__(
        self,
        members: Iterable[Agent],
        *,
        name: str,
        description: str = "",
        termination: Termination | None = None,
        max_turns: int = 20,
    ) -> None:
        self.members: dict[str, Agent] = {}
        for member in members:
            if not _MEMBER_NAME.fullmatch(member.name):
                raise ValueError(
                    f"member name {member.name!r} is invalid: use 1-64 letters, digits, '_' or '-'"
                )
            if member.name in self.members:
                raise ValueError(f"two members are named {member.name!r}; names must be unique")
            self.members[member.name] = member
        if not self.members:
            raise ValueError(f"team {name!r} needs at least one member")
        if max_turns < 1:
            raise ValueError("max_turns must be at least 1")
        self.name = name
        self.description = description
        """What the team is for (shown when it is a member or a tool of another agent)."""
        self.termination = termination
        """When a run stops (besides `max_turns` and the team's own end)."""
        self.max_turns = max_turns
        """Member turns one run may take before it stops with `max_turns`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, members={list(self.members)})"

    async def run(
        self,
        messages: MessagesInput = (),
        *,
        state: TeamState | None = None,
        stop: ExternalStop | None = None,
        stream: bool | None = None,
    ) -> AsyncIterator[Event]:
        """Run the team on `messages`, yielding every member's events, then a `RunResult`.

        `state` keeps the conversation (a new one is used if None); a state whose run was
        interrupted resumes that run, with `messages` (if any) added first. `stop` ends
        this run promptly when stopped (stop reason 'cancelled'; the run can be resumed).
        `stream` is passed on to the members that take it (text deltas as they come).
        """
        state = TeamState() if state is None else state
        with state.claim(self.name):
            run = self._run(to_messages(messages), state, stop, stream)
            async with aclosing(run):
                async for event in run:
                    yield event

    async def result(
        self,
        messages: MessagesInput = (),
        *,
        state: TeamState | None = None,
        stop: ExternalStop | None = None,
    ) -> RunResult:
        """Run to completion and return the `RunResult`."""
        return await final_result(self.run(messages, state=state, stop=stop))

    def run_sync(
        self, messages: MessagesInput = (), *, state: TeamState | None = None
    ) -> RunResult:
        """Run to completion from synchronous code."""
        return run_sync(self.run(messages, state=state))

    # ---- the loop ----------------------------------------------------------------------

    async def _run(
        self, new: list[Message], state: TeamState, stop: ExternalStop | None, stream: bool | None
    ) -> AsyncGenerator[Event, None]:
        self._begin(new, state)
        conditions = self.termination.start(state.termination) if self.termination else None
        watched = [s for s in (conditions, stop.start() if stop else None) if s is not None]
        check = _AnyState(watched) if watched else None
        watch = Watch(check.wait() if check else None)
        try:
            while True:
                fired = check.fired if check else None
                if fired is not None or state.run_turns >= self.max_turns:
                    reason: StopReason = "completed" if fired is not None else "max_turns"
                    async for event in self._finish(state, reason, fired):
                        yield event
                    return
                if not state.next_speakers:
                    async with aclosing(self._choose(state, watch, conditions)) as choosing:
                        async for event in choosing:
                            yield event
                    if not state.next_speakers:  # nobody may speak: the run is over
                        nobody = Fired(state.selection_reason)
                        async for event in self._finish(state, "completed", nobody):
                            yield event
                        return
                outcome = TurnOutcome(tuple(state.next_speakers))
                yield SpeakerSelected(outcome.speakers, self.name, state.selection_reason)
                async with aclosing(self._play(state, outcome, watch, stream)) as playing:
                    async for event in playing:
                        yield event
                if self._commit_turn(state, outcome, conditions):
                    fired = check.fired if check else None
                    async for event in self._finish(state, "completed", fired):
                        yield event
                    return
        except Interrupted:
            fired = (check.fired if check else None) or Fired("stopped")
            async for event in self._finish(state, "completed", fired):
                yield event
        finally:
            await watch.close()

    async def _choose(
        self, state: TeamState, watch: Watch, conditions: TerminationState | None
    ) -> AsyncGenerator[Event, None]:
        """Run the selection (interruptibly) and commit it to the state."""
        selection: Selection | None = None
        spent: list[UsageEvent] = []
        async with aclosing(interleave([self._select(state)], watch)) as items:
            async for _, item in items:
                if isinstance(item, Selection):
                    selection = item
                    continue
                if isinstance(item, UsageEvent):
                    spent.append(item)
                yield item
        if selection is None:
            raise AgentguildError(f"team {self.name!r} chose no speaker")
        self._commit_selection(state, selection, spent, conditions)

    async def _play(
        self, state: TeamState, outcome: TurnOutcome, watch: Watch, stream: bool | None
    ) -> AsyncGenerator[Event, None]:
        """Run the turn's speakers at once, passing their events on, noting their results."""
        speakers = outcome.speakers
        streams = [
            self._member_events(name, member_view(state.transcript, name), stream)
            for name in speakers
        ]
        async with aclosing(interleave(streams, watch)) as turn:
            async for index, event in turn:
                if isinstance(event, RunResult):
                    outcome.results[speakers[index]] = event
                    continue
                if isinstance(event, UsageEvent):
                    outcome.usage.append(event)
                elif isinstance(event, HandoffEvent):
                    outcome.handoffs.append(event)
                yield event

    def _begin(self, new: list[Message], state: TeamState) -> None:
        if state.running:
            state.transcript.extend(new)
            return
        if not new and not state.transcript:
            raise ValueError(f"team {self.name!r} needs messages to run on")
        state.transcript.extend(new)
        state.running = True
        state.run_start = len(state.transcript)
        state.run_turns = 0
        state.termination = {}
        state.usage = Usage()

    def _commit_selection(
        self,
        state: TeamState,
        selection: Selection,
        spent: Sequence[UsageEvent],
        conditions: TerminationState | None,
    ) -> None:
        unknown = [name for name in selection.speakers if name not in self.members]
        if unknown:
            raise AgentguildError(f"team {self.name!r} has no member(s) {unknown}")
        state.next_speakers = list(selection.speakers)
        state.selection_reason = selection.reason
        for event in spent:
            state.usage = state.usage + event.usage
            if conditions is not None:
                conditions.observe(event)
        if conditions is not None:
            state.termination = conditions.progress()

    def _commit_turn(
        self, state: TeamState, outcome: TurnOutcome, conditions: TerminationState | None
    ) -> bool:
        """Add the turn to the state (all at once: a saved state is at a turn boundary)."""
        missing = [name for name in outcome.speakers if name not in outcome.results]
        if missing:
            raise AgentguildError(
                f"member(s) {missing} of team {self.name!r} ended without a result"
            )
        replies = [self._reply(name, outcome) for name in outcome.speakers]
        state.transcript.extend(replies)
        state.turns += 1
        state.run_turns += 1
        state.next_speakers = []
        state.selection_reason = ""
        for usage in outcome.usage:
            state.usage = state.usage + usage.usage
        done = self._after_turn(state, outcome)
        if conditions is not None:
            for usage in outcome.usage:
                conditions.observe(usage)
            for name, reply in zip(outcome.speakers, replies, strict=True):
                conditions.observe(MessageEvent(reply, name))
            for handoff in outcome.handoffs:
                conditions.observe(handoff)
            state.termination = conditions.progress()
        return done

    async def _finish(
        self, state: TeamState, reason: StopReason, fired: Fired | None = None
    ) -> AsyncIterator[Event]:
        if fired is not None and fired.external:
            reason = "cancelled"  # resumable: the state stays `running`
        else:
            state.running = False
            state.termination = {}
        if fired is not None:
            yield TerminationEvent(fired.reason, self.name)
        yield RunResult(self.name, state.produced, state.usage, reason, state.run_turns)

    # ---- what subclasses decide ------------------------------------------------------------

    @abstractmethod
    def _select(self, state: TeamState) -> AsyncIterator[Event | Selection]:
        """Who speaks next: yield any events (a selector's model call), then a `Selection`."""

    def _member_events(
        self, name: str, messages: list[Message], stream: bool | None
    ) -> AsyncIterator[Event]:
        """The events of one member's turn; they must include the member's `RunResult`."""
        return run_agent(self.members[name], messages, stream=stream)

    def _reply(self, name: str, outcome: TurnOutcome) -> Message:
        """The message a member's turn adds to the team conversation."""
        return Message.assistant(outcome.results[name].output, name=name)

    def _after_turn(self, state: TeamState, outcome: TurnOutcome) -> bool:
        """Called when a turn is committed; may set `state.next_speakers`. True ends the run."""
        return False


def last_member(transcript: Sequence[Message], members: Iterable[str]) -> str | None:
    """The member who spoke last in `transcript`, if any did."""
    names = set(members)
    for message in reversed(transcript):
        if message.role == "assistant" and message.name in names:
            return message.name
    return None
