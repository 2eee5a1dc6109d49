"""When a team run stops: composable termination conditions.

A condition is configuration (`MaxMessages(10) | TextMention("TERMINATE")`); each run
starts its own `TerminationState` from it with `start()`, so one team instance can run many
times, concurrently. Combine conditions with `|` (either fires) and `&` (both have fired).

What a team feeds a condition (`TerminationState.observe`), at the end of every turn:
the messages its members added to the team conversation (`MessageEvent`), the tokens the
turn spent (`UsageEvent`) and handoffs (`HandoffEvent`). Conditions that fire by themselves
(`Timeout`, `ExternalStop`) also interrupt a turn in progress (`TerminationState.wait`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..types import Event, HandoffEvent, JSONObject, MessageEvent, UsageEvent

__all__ = [
    "AllOf",
    "AnyOf",
    "ExternalStop",
    "Fired",
    "HandoffTermination",
    "MaxMessages",
    "Termination",
    "TerminationState",
    "TextMention",
    "Timeout",
    "TokenBudget",
]


@dataclass(frozen=True, slots=True)
class Fired:
    """Why a condition fired."""

    reason: str
    external: bool = False
    """Fired by an `ExternalStop` (the run ends as 'cancelled', and can be resumed)."""


class TerminationState(ABC):
    """One run's progress towards a condition."""

    @property
    @abstractmethod
    def fired(self) -> Fired | None:
        """Why the condition fired, or None while it has not. Once fired, it stays fired."""

    def observe(self, event: Event) -> None:  # noqa: B027 - optional hook
        """Take note of something that happened in the run."""

    async def wait(self) -> None:
        """Return once the condition fires by itself (a deadline, a stop signal).

        Conditions that fire only on what they observe never return from here.
        """
        await asyncio.get_running_loop().create_future()

    def progress(self) -> JSONObject:
        """The progress so far, as JSON, for `Termination.start(progress)` to resume from."""
        return {}


class Termination(ABC):
    """A termination condition (configuration). Combine with `|` and `&`."""

    @abstractmethod
    def start(self, progress: JSONObject | None = None) -> TerminationState:
        """A fresh per-run state, resuming from `progress()` of an earlier one if given."""

    def __or__(self, other: Termination) -> Termination:
        return AnyOf((*_parts(self, AnyOf), *_parts(other, AnyOf)))

    def __and__(self, other: Termination) -> Termination:
        return AllOf((*_parts(self, AllOf), *_parts(other, AllOf)))


def _parts(condition: Termination, kind: type[AnyOf] | type[AllOf]) -> Sequence[Termination]:
    return condition.conditions if type(condition) is kind else (condition,)


# ---- composites --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnyOf(Termination):
    """Fires when any of its conditions fires (`a | b`)."""

    conditions: tuple[Termination, ...]

    def start(self, progress: JSONObject | None = None) -> TerminationState:
        return _AnyState(_start_children(self.conditions, progress, "any"))


@dataclass(frozen=True, slots=True)
class AllOf(Termination):
    """Fires once every one of its conditions has fired (`a & b`)."""

    conditions: tuple[Termination, ...]

    def start(self, progress: JSONObject | None = None) -> TerminationState:
        return _AllState(_start_children(self.conditions, progress, "all"))


def _start_children(
    conditions: Sequence[Termination], progress: JSONObject | None, key: str
) -> list[TerminationState]:
    saved = (progress or {}).get(key)
    if not isinstance(saved, list) or len(saved) != len(conditions):
        saved = [None] * len(conditions)
    pairs = zip(conditions, saved, strict=True)
    return [c.start(p if isinstance(p, dict) else None) for c, p in pairs]


class _CompositeState(TerminationState):
    key = ""

    def __init__(self, children: list[TerminationState]) -> None:
        self.children = children

    def observe(self, event: Event) -> None:
        for child in self.children:
            child.observe(event)

    def progress(self) -> JSONObject:
        return {self.key: [child.progress() for child in self.children]}


class _AnyState(_CompositeState):
    key = "any"

    @property
    def fired(self) -> Fired | None:
        for child in self.children:
            fired = child.fired
            if fired is not None:
                return fired
        return None

    async def wait(self) -> None:
        waiters = [asyncio.ensure_future(child.wait()) for child in self.children]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()


class _AllState(_CompositeState):
    key = "all"

    @property
    def fired(self) -> Fired | None:
        reasons = [child.fired for child in self.children]
        if any(reason is None for reason in reasons):
            return None
        done = [reason for reason in reasons if reason is not None]
        return Fired(" and ".join(r.reason for r in done), any(r.external for r in done))

    async def wait(self) -> None:
        await asyncio.gather(*(child.wait() for child in self.children if child.fired is None))


# ---- conditions on what happened ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MaxMessages(Termination):
    """Fires once the members have added `count` messages to the conversation.

    The input messages of the run don't count; each member turn adds one message.
    """

    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("MaxMessages needs a count of at least 1")

    def start(self, progress: JSONObject | None = None) -> TerminationState:
        return _MaxMessagesState(self.count, int((progress or {}).get("messages", 0)))


class _MaxMessagesState(TerminationState):
    def __init__(self, limit: int, seen: int) -> None:
        self.limit, self.seen = limit, seen

    @property
    def fired(self) -> Fired | None:
        if self.seen < self.limit:
            return None
        return Fired(f"{self.seen} messages (max {self.limit})")

    def observe(self, event: Event) -> None:
        if isinstance(event, MessageEvent):
            self.seen += 1

    def progress(self) -> JSONObject:
        return {"messages": self.seen}


@dataclass(frozen=True, slots=True, init=False)
class TextMention(Termination):
    """Fires when a member's message contains `text` (e.g. "TERMINATE", "APPROVE").

    `sources` limits it to messages of those members.
    """

    text: str
    sources: tuple[str, ...] | None = None

    def __init__(self, text: str, sources: Iterable[str] | None = None) -> None:
        if not text:
            raise ValueError("TextMention needs a non-empty text")
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "sources", None if sources is None else tuple(sources))

    def start(self, progress: JSONObject | None = None) -> TerminationState:
        return _LatchState(self._matches, (progress or {}).get("fired"))

    def _matches(self, event: Event) -> str | None:
        if not isinstance(event, MessageEvent):
            return None
        if self.sources is not None and event.agent not in self.sources:
            return None
        return f"{event.agent} said {self.text!r}" if self.text in event.message.text else None


@dataclass(frozen=True, slots=True)
class HandoffTermination(Termination):
    """Fires when a member hands off to `target` (by default the user: the swarm waits for
    the user's answer; run the team again with it to continue)."""

    target: str = "user"

    def start(self, progress: JSONObject | None = None) -> TerminationState:
        return _LatchState(self._matches, (progress or {}).get("fired"))

    def _matches(self, event: Event) -> str | None:
        if isinstance(event, HandoffEvent) and event.target == self.target:
            return f"{event.source} handed off to {self.target}"
        return None


class _LatchState(TerminationState):
    """Fires on the first observed event `match` describes."""

    def __init__(self, match: Callable[[Event], str | None], fired: object) -> None:
        self._match = match
        self._reason = fired if isinstance(fired, str) else None

    @property
    def fired(self) -> Fired | None:
        return Fired(self._reason) if self._reason is not None else None

    def observe(self, event: Event) -> None:
        if self._reason is None:
            self._reason = self._match(event)

    def progress(self) -> JSONObject:
        return {"fired": self._reason} if self._reason is not None else {}


@dataclass(frozen=True, slots=True)
class TokenBudget(Termination):
    """Fires once the run's model calls have used `max_tokens` tokens (prompt + completion)."""

    max_tokens: int

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("TokenBudget needs max_tokens of at least 1")

    def start(self, progress: JSONObject | None = None) -> TerminationState:
        return _TokenBudgetState(self.max_tokens, int((progress or {}).get("tokens", 0)))


class _TokenBudgetState(TerminationState):
    def __init__(self, budget: int, used: int) -> None:
        self.budget, self.used = budget, used

    @property
    def fired(self) -> Fired | None:
        if self.used < self.budget:
            return None
        return Fired(f"{self.used} tokens used (budget {self.budget})")

    def observe(self, event: Event) -> None:
        if isinstance(event, UsageEvent):
            self.used += event.usage.total_tokens

    def progress(self) -> JSONObject:
        return {"tokens": self.used}


# ---- conditions that fire by themselves --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timeout(Termination):
    """Fires `seconds` after the run started, interrupting a turn in progress.

    A resumed run continues the clock where the saved one stopped.
    """

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError("Timeout needs a positive number of seconds")

    def start(self, progress: JSONObject | None = None) -> TerminationState:
        elapsed = float((progress or {}).get("elapsed_s", 0.0))
        return _TimeoutState(self.seconds, elapsed)


class _TimeoutState(TerminationState):
    def __init__(self, seconds: float, elapsed: float) -> None:
        self.seconds = seconds
        self._started = time.monotonic() - elapsed
        self._expired = False

    @property
    def fired(self) -> Fired | None:
        if not self._expired and time.monotonic() - self._started < self.seconds:
            return None
        return Fired(f"timeout after {self.seconds:g}s")

    async def wait(self) -> None:
        remaining = self._started + self.seconds - time.monotonic()
        if remaining > 0:
            await asyncio.sleep(remaining)
        self._expired = True

    def progress(self) -> JSONObject:
        return {"elapsed_s": min(time.monotonic() - self._started, self.seconds)}


class ExternalStop(Termination):
    """A stop button: `stop()` ends the runs using it promptly, even mid-turn.

    Safe to call from another task, another thread or an API handler. Pass one per run
    (`team.run(task, stop=handle)`) or put it in a team's termination to stop every run of
    that team. A stopped handle stays stopped; use a new one for the next run. A run ended
    this way stops as 'cancelled' and can be resumed from its state.
    """

    __slots__ = ("_lock", "_reason", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def __repr__(self) -> str:
        return f"ExternalStop(stopped={self.stopped})"

    @property
    def stopped(self) -> bool:
        """Whether `stop()` was called."""
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        return self._reason

    def stop(self, reason: str = "stopped externally") -> None:
        """Stop the runs using this handle (idempotent; the first reason is kept)."""
        with self._lock:
            if self._reason is not None:
                return
            self._reason = reason
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, future)

    async def wait(self) -> None:
        """Return once `stop()` has been called."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._reason is None:
                self._waiters.append((loop, future))
            else:
                future.set_result(None)
        try:
            await future
        finally:
            with self._lock:
                if (loop, future) in self._waiters:
                    self._waiters.remove((loop, future))

    def start(self, progress: JSONObject | None = None) -> TerminationState:
        return _ExternalState(self)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(slots=True)
class _ExternalState(TerminationState):
    handle: ExternalStop = field()

    @property
    def fired(self) -> Fired | None:
        reason = self.handle.reason
        return Fired(reason, external=True) if reason is not None else None

    async def wait(self) -> None:
        await self.handle.wait()
