"""Single-flight: one resolution of a cache key, shared by every concurrent identical request.

A flight runs in its own task (the shared-store lookup, then at most one upstream call),
detached from the requests that wait for it. Every waiting request, including the one
that started it, is a consumer on equal terms: a streaming consumer replays the chunks as
they arrive, a `complete()` consumer waits for the end. A consumer that leaves (cancelled,
or a stream closed early) does not disturb the others; when the last one leaves before the
end, the upstream call is cancelled, since nobody would read it (and an unfinished answer
is never cached). If the upstream call fails, every consumer gets the same error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from types import TracebackType

from ..errors import ModelConnectionError
from ._cache_entry import CacheEntry
from .base import ChatChunk, ChatResponse, ChunkAccumulator


class Flight:
    """The shared state of one in-progress resolution of `key`."""

    __slots__ = (
        "_changed",
        "_traceback",
        "abandoned",
        "chunks",
        "consumers",
        "done",
        "entry",
        "error",
        "from_shared",
        "key",
        "live",
        "task",
    )

    def __init__(self, key: str) -> None:
        self.key = key
        self.chunks: list[ChatChunk] = []
        """Chunks streamed live from upstream so far."""
        self.live = False
        """Whether the answer is being streamed from upstream (else it arrives whole)."""
        self.entry: CacheEntry | None = None
        """The answer, once it is complete (None for a finished but uncacheable stream)."""
        self.from_shared = False
        """Whether the answer came from the shared store (L2) rather than upstream."""
        self.error: Exception | None = None
        self._traceback: TracebackType | None = None
        self.abandoned = False
        self.done = False
        self.consumers = 0
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    # ---- producer side (the flight's task) --------------------------------------------

    def publish(self, chunk: ChatChunk) -> None:
        """Hand one live chunk to every streaming consumer."""
        self.live = True
        self.chunks.append(chunk)
        self._notify()

    def succeed(self, entry: CacheEntry | None, *, from_shared: bool) -> None:
        """The answer is complete (`entry` is None when it must not be cached)."""
        self.entry, self.from_shared, self.done = entry, from_shared, True
        self._notify()

    def fail(self, error: Exception) -> None:
        """The upstream call failed; every consumer raises `error`."""
        self.error, self._traceback, self.done = error, error.__traceback__, True
        self._notify()

    def abandon(self) -> None:
        """The flight was cancelled before it finished."""
        if not self.done:
            self.abandoned = self.done = True
            self._notify()

    def _notify(self) -> None:
        # A fresh event per change: consumers wait on the one they saw before checking
        # the state, so no change between their check and their wait goes unnoticed.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # ---- consumer side ----------------------------------------------------------------

    async def response(self) -> ChatResponse:
        """Wait for the end; the answer as one response."""
        while not self.done:
            await self._changed.wait()
        self._raise_if_failed()
        if self.entry is not None:
            return self.entry.response()
        accumulator = ChunkAccumulator()
        for chunk in self.chunks:
            accumulator.add(chunk)
        return accumulator.response()

    async def replay(self) -> AsyncGenerator[ChatChunk, None]:
        """The answer's chunks: live ones as they arrive, else the whole sequence at the end."""
        sent = 0
        while True:
            changed = self._changed
            while sent < len(self.chunks):
                yield self.chunks[sent]
                sent += 1
            if self.done:
                break
            if changed is self._changed:
                await changed.wait()
        self._raise_if_failed()
        if not self.live and self.entry is not None:
            for chunk in self.entry.chunks():
                yield chunk

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            # Re-raise with the original traceback each time, so N consumers do not grow it.
            raise self.error.with_traceback(self._traceback)
        if self.abandoned:
            raise ModelConnectionError(
                f"the shared upstream call for cache key {self.key!r} was cancelled"
            )
