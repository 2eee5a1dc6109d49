"""The run event bus: where a run's encoded events go so any API instance can relay them.

Every run has one ordered log of encoded events (`{"type", "data"}`), numbered from 1;
the number is the SSE `id`, so a client resuming with `Last-Event-ID: n` gets the events
after `n`, from whichever instance it reaches. Two implementations of `EventBus`:

- `InProcessEventBus` (embedded default): the logs live in this process (`RunLog`);
  only this process's runs can be followed.
- `RedisEventBus` (`server.redis_url` set): one Redis Stream per run, entry ids
  `<seq>-0`, so every instance sharing the Redis can replay and follow every run.

The runner appends to the `RunLog` that `EventBus.run_log` gives it; the log reaches the
bus by itself. Followers call `subscribe(run_id, after_seq)`: replay, then live events
until the run's terminal event (`run_completed`).

```python
bus = event_bus_from_settings(settings.server)
async for seq, event in bus.subscribe(run_id, after_seq=last_event_id):
    ...
```
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..errors import ConfigError
from ..types import JSONObject

if TYPE_CHECKING:
    from .._platform_settings import ServerSettings

__all__ = [
    "TERMINAL_EVENT",
    "EventBus",
    "InProcessEventBus",
    "RunLog",
    "event_bus_from_settings",
]

TERMINAL_EVENT = "run_completed"
"""The type of a run's last event: followers stop after it."""


class EventSink(Protocol):
    """Where a `RunLog` forwards what is appended to it (an `EventBus`)."""

    def publish(self, run_id: str, seq: int, event: JSONObject) -> None: ...

    def close_run(self, run_id: str) -> None: ...


class RunLog:
    """The append-only event log of one run; followers replay it, then follow it live.

    With a `sink`, every appended event and the end are forwarded to it too (the run's
    bus), under `run_id`. `history` are events 1..n the run already has (a run taken over
    from a process that died): followers replay them; new events are numbered after them.
    """

    __slots__ = ("_changed", "_closed", "_events", "_run_id", "_sink")

    def __init__(
        self,
        *,
        run_id: str = "",
        sink: EventSink | None = None,
        history: Sequence[JSONObject] = (),
    ) -> None:
        self._events: list[JSONObject] = list(history)
        self._changed = asyncio.Event()
        self._closed = False
        self._run_id = run_id
        self._sink = sink

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest event (0 before the first)."""
        return len(self._events)

    @property
    def closed(self) -> bool:
        """Whether the run has ended (no event will follow)."""
        return self._closed

    def append(self, event: JSONObject) -> int:
        """Add an encoded event; returns its sequence number (1, 2, ...)."""
        if self._closed:
            raise RuntimeError("cannot append to a closed run log")
        self._events.append(event)
        seq = len(self._events)
        if self._sink is not None:
            self._sink.publish(self._run_id, seq, event)
        self._wake()
        return seq

    def abandon(self) -> None:
        """Mark the log complete here without ending the run's shared stream: another
        process took the run over and continues that stream (its followers go on)."""
        self._sink = None
        self.close()

    def close(self) -> None:
        """Mark the log complete: followers stop after its last event."""
        if self._closed:
            return
        self._closed = True
        if self._sink is not None:
            self._sink.close_run(self._run_id)
        self._wake()

    async def follow(self, after_seq: int = 0) -> AsyncGenerator[tuple[int, JSONObject], None]:
        """The events after `after_seq` as `(seq, event)`, then live ones until the end."""
        seq = max(after_seq, 0)
        while True:
            changed = self._changed
            while seq < len(self._events):
                seq += 1
                yield seq, self._events[seq - 1]
            if self._closed:
                return
            await changed.wait()

    def _wake(self) -> None:
        # Waiters hold the old event; a fresh one makes the next wait block again.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


@runtime_checkable
class EventBus(Protocol):
    """Ordered, resumable per-run event logs, shared by the instances that use the bus."""

    shared: bool
    """Whether runs of other processes reach this bus (a follower of a run that is not
    running here waits on the bus for it)."""

    def run_log(self, run_id: str) -> RunLog:
        """The log a run executing in this process appends to; it publishes to the bus."""
        ...

    async def resume_log(self, run_id: str) -> RunLog:
        """The log of a run taken over from a process that died: it holds the events the
        bus has of the run and numbers new ones after them (SSE ids stay unique)."""
        ...

    def publish(self, run_id: str, seq: int, event: JSONObject) -> None:
        """Add event `seq` (1, 2, ... without gaps) of a run. Never raises for an outage:
        a bus that cannot deliver now buffers, logs and counts."""
        ...

    def close_run(self, run_id: str) -> None:
        """Mark the run's log complete; it expires some time later."""
        ...

    def subscribe(
        self, run_id: str, after_seq: int = 0
    ) -> AsyncGenerator[tuple[int, JSONObject], None]:
        """The run's events after `after_seq` as `(seq, event)`, then live ones until its
        terminal event. Close the iterator when done with it (`contextlib.aclosing`)."""
        ...

    async def has_run(self, run_id: str) -> bool:
        """Whether the bus holds events of the run (running, or ended and not expired)."""
        ...

    async def aclose(self) -> None:
        """Deliver what is buffered (within a bound) and release connections."""
        ...


class InProcessEventBus:
    """The embedded event bus: each run's `RunLog`, in this process.

    Finished runs' logs are kept for late followers: at most `keep_finished`, each for at
    most `finished_ttl_s` after its end.
    """

    shared = False

    def __init__(self, *, keep_finished: int = 1000, finished_ttl_s: float = 300.0) -> None:
        self._logs: dict[str, RunLog] = {}
        self._finished: OrderedDict[str, float] = OrderedDict()
        self._keep_finished = keep_finished
        self._ttl_s = finished_ttl_s

    def __repr__(self) -> str:
        return f"InProcessEventBus(runs={len(self._logs)})"

    def run_log(self, run_id: str) -> RunLog:
        self._evict()
        log = self._logs.get(run_id)
        if log is None:
            log = self._logs[run_id] = _OwnedLog(self, run_id)
        return log

    async def resume_log(self, run_id: str) -> RunLog:
        old = self._logs.get(run_id)
        if old is not None and not old.closed:
            return old
        history = [event async for _, event in old.follow()] if old is not None else []
        self._finished.pop(run_id, None)
        log = self._logs[run_id] = _OwnedLog(self, run_id, history)
        return log

    def publish(self, run_id: str, seq: int, event: JSONObject) -> None:
        log = self.run_log(run_id)
        if seq <= log.last_seq:
            return  # delivered already
        if seq != log.last_seq + 1:
            raise ValueError(f"event {seq} of run {run_id!r} follows event {log.last_seq}")
        log.append(event)

    def close_run(self, run_id: str) -> None:
        log = self._logs.get(run_id)
        if log is not None:
            log.close()

    async def subscribe(
        self, run_id: str, after_seq: int = 0
    ) -> AsyncGenerator[tuple[int, JSONObject], None]:
        after_seq = max(after_seq, 0)
        # From the event at `after_seq` itself: if that was the last one, stop at once.
        async for seq, event in self.run_log(run_id).follow(max(after_seq - 1, 0)):
            if seq > after_seq:
                yield seq, event
            if event.get("type") == TERMINAL_EVENT:
                return

    async def has_run(self, run_id: str) -> bool:
        self._evict()
        return run_id in self._logs

    async def aclose(self) -> None:
        for log in list(self._logs.values()):
            log.close()

    def _ended(self, run_id: str) -> None:
        self._finished[run_id] = time.monotonic()
        self._evict()

    def _evict(self) -> None:
        horizon = time.monotonic() - self._ttl_s
        while self._finished:
            run_id, finished_at = next(iter(self._finished.items()))
            if finished_at > horizon and len(self._finished) <= self._keep_finished:
                break
            del self._finished[run_id]
            self._logs.pop(run_id, None)


class _OwnedLog(RunLog):
    """An `InProcessEventBus` log: tells its bus when it ends (to expire it later)."""

    __slots__ = ("_bus",)

    def __init__(
        self, bus: InProcessEventBus, run_id: str, history: Sequence[JSONObject] = ()
    ) -> None:
        super().__init__(run_id=run_id, history=history)
        self._bus = bus

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._bus._ended(self._run_id)


def shared_bus_url(server: ServerSettings) -> str | None:
    """The Redis URL instances share events (and cancel requests) through, per
    `server.event_bus`: `memory` (None: this process only), `redis` (needs
    `server.redis_url`), or `auto` (Redis when `redis_url` is set)."""
    kind = server.event_bus
    if kind == "auto":
        kind = "redis" if server.redis_url else "memory"
    if kind == "memory":
        return None
    if not server.redis_url:
        raise ConfigError(
            "server.event_bus is 'redis' but server.redis_url is not set; set "
            "AGENTGUILD_SERVER__REDIS_URL or use event_bus 'memory'"
        )
    return server.redis_url


def event_bus_from_settings(server: ServerSettings) -> EventBus:
    """The bus `server.event_bus` selects (see `shared_bus_url`)."""
    url = shared_bus_url(server)
    if url is None:
        return InProcessEventBus()
    from ._events_redis import RedisEventBus

    return RedisEventBus(
        url,
        ttl_s=server.event_stream_ttl_s,
        finished_ttl_s=server.event_stream_ttl_s,
        maxlen=server.event_stream_maxlen,
    )
