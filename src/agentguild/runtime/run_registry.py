"""Live runs of this process: their event logs (for resuming streams) and their tasks.

Every run the `Runner` starts gets a `RunHandle` holding its task and an append-only log
of its encoded events, numbered from 1. Any number of clients follow a run with
`RunHandle.events(after_seq)`: they get the events after `after_seq` (the SSE
`Last-Event-ID`) and then live ones as they happen, until the run ends. Finished runs stay
in the `RunRegistry` for a while, so a client that reconnects just after the end still
gets the last events.

This registry is in-process: one instance serves the runs it started. A run's log comes
from the runner's event bus (`events.py`), which also carries it to other instances when
the bus is shared (Redis).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator
from typing import Literal, TypeAlias

from ..types import JSONObject, Message, RunResult
from .event_codec import TERMINAL_STATUSES, RunStatus
from .events import RunLog

__all__ = ["RunHandle", "RunLog", "RunMode", "RunRegistry"]

RunMode: TypeAlias = Literal["stream", "wait", "background"]
"""How a run is served: streamed (cancelled when its last follower leaves), awaited
(cancelled when its caller leaves), or in the background (independent of any client)."""


class RunHandle:
    """One run executing (or recently finished) in this process."""

    def __init__(
        self,
        run_id: str,
        *,
        tenant_id: str,
        conversation_id: str,
        agent: str,
        mode: RunMode,
        log: RunLog | None = None,
    ) -> None:
        self.run_id = run_id
        self.tenant_id = tenant_id
        self.conversation_id = conversation_id
        self.agent = agent
        """The name of the agent running."""
        self.mode: RunMode = mode
        self.log = log if log is not None else RunLog()
        """The run's events (from the event bus's `run_log`; a private one by default)."""
        self.status: RunStatus = "queued"
        self.result: RunResult | None = None
        """The agent's final result, once it has one."""
        self.messages: list[Message] = []
        """Messages the run has added to the conversation so far (all stored), in order."""
        self.view: JSONObject = {}
        """The run as the API shows it, as created (see `runner.run_view`)."""
        self.error: str | None = None
        """What went wrong, for a failed run."""
        self.finished_at: float | None = None
        """`time.monotonic()` when the run ended."""
        self.task: asyncio.Task[None] | None = None
        self._done = asyncio.Event()
        self._followers = 0
        self._cancelling = False

    def __repr__(self) -> str:
        return f"RunHandle({self.run_id!r}, status={self.status!r}, mode={self.mode!r})"

    @property
    def done(self) -> bool:
        """Whether the run has ended (completed, failed or cancelled)."""
        return self._done.is_set()

    async def events(self, after_seq: int = 0) -> AsyncGenerator[tuple[int, JSONObject], None]:
        """Follow the run: `(seq, {"type", "data"})` after `after_seq`, then live ones.

        In stream mode, the run is cancelled when its last follower stops following
        before the end (a client that disconnects stops the model and tool work).
        Close the iterator when done with it (`contextlib.aclosing`).
        """
        self._followers += 1
        try:
            async for item in self.log.follow(after_seq):
                yield item
        finally:
            self._followers -= 1
            self.abandon()

    def abandon(self) -> None:
        """A client of the run is gone: a stream-mode run nobody follows any more is
        cancelled (call it when a client that started a run leaves, even if it never
        began to follow it)."""
        if self.mode == "stream" and self._followers == 0:
            self.cancel()

    async def wait(self) -> RunHandle:
        """Wait until the run ends; returns this handle (see `status`, `result`)."""
        await self._done.wait()
        return self

    def cancel(self) -> bool:
        """Ask the run to stop; False if it has ended or was already asked to."""
        if self.done or self.task is None or self._cancelling:
            return False
        self._cancelling = True
        return self.task.cancel()

    def finish(self, status: RunStatus, *, error: str | None = None) -> None:
        """Record the run's end (the runner calls this once, after its last event)."""
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"{status!r} is not a final run status")
        self.status = status
        self.error = error
        self.finished_at = time.monotonic()
        self.log.close()
        self._done.set()


class RunRegistry:
    """The runs of this process by id; keeps finished ones for a while for late followers.

    At most `keep_finished` finished runs are kept, each for at most `finished_ttl_s`.
    """

    def __init__(self, *, keep_finished: int = 1000, finished_ttl_s: float = 300.0) -> None:
        self._runs: dict[str, RunHandle] = {}
        self._finished: OrderedDict[str, float] = OrderedDict()
        self._keep_finished = keep_finished
        self._ttl_s = finished_ttl_s

    def add(self, handle: RunHandle) -> None:
        """Register a new run."""
        self._evict()
        self._runs[handle.run_id] = handle

    def get(self, run_id: str, tenant_id: str) -> RunHandle | None:
        """The run with that id if this process has it and it belongs to `tenant_id`."""
        handle = self._runs.get(run_id)
        if handle is None or handle.tenant_id != tenant_id:
            return None
        return handle

    def lookup(self, run_id: str) -> RunHandle | None:
        """The run with that id if this process has it, whatever its tenant (for callers
        that have already authorised the request, like cancel requests from other
        instances)."""
        return self._runs.get(run_id)

    def finished(self, handle: RunHandle) -> None:
        """Note that a run ended (it stays available until evicted)."""
        self._finished[handle.run_id] = handle.finished_at or time.monotonic()
        self._evict()

    def active(self, tenant_id: str | None = None) -> list[RunHandle]:
        """Runs not yet ended, of one tenant or of all."""
        return [
            handle
            for handle in self._runs.values()
            if not handle.done and (tenant_id is None or handle.tenant_id == tenant_id)
        ]

    def count_active(self, tenant_id: str) -> int:
        """How many runs of `tenant_id` are queued or running in this process."""
        return sum(1 for h in self._runs.values() if h.tenant_id == tenant_id and not h.done)

    def __len__(self) -> int:
        return len(self._runs)

    def _evict(self) -> None:
        horizon = time.monotonic() - self._ttl_s
        while self._finished:
            run_id, finished_at = next(iter(self._finished.items()))
            if finished_at > horizon and len(self._finished) <= self._keep_finished:
                break
            del self._finished[run_id]
            self._runs.pop(run_id, None)
