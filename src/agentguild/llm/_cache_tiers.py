"""`ResponseCache`: the L1/L2 tiers, single-flight bookkeeping, degraded mode and stats."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ._cache_entry import CacheEntry, CorruptEntryError
from ._cache_flight import Flight
from ._cache_signal import current_probe
from ._cache_stores import CacheStore, CacheStoreError, CacheStoreUnavailableError, MemoryStore

logger = logging.getLogger("agentguild.cache")

Resolver = Callable[[Flight], Awaitable[CacheEntry | None]]
"""Produces a flight's answer from upstream (publishing live chunks as it goes); returns
the entry to cache, or None if the answer must not be cached."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of a `ResponseCache`'s counters.

    Every cacheable request is exactly one of: an L1 hit, a coalesced request (it joined an
    identical request in flight), or the start of a flight, which ends as an L2 hit or a
    miss (one upstream call). So `requests == l1_hits + coalesced + l2_hits + misses`.
    """

    requests: int
    """Cacheable requests looked up."""
    l1_hits: int
    l2_hits: int
    misses: int
    """Upstream calls made (failed ones included)."""
    coalesced: int
    """Requests answered by an identical request's upstream call or L2 lookup."""
    bypassed: int
    """Requests sent upstream uncached (policy, or a parameter with no JSON form)."""
    l2_errors: int
    """Failed shared-store operations (unreachable store, bad reply, unreadable entry)."""
    l2_skipped: int
    """Shared-store operations skipped because the store was down (degraded mode)."""
    l2_outages: int
    """Times the shared store was found unreachable after working (or at first use)."""
    degraded: bool
    """Whether the shared store is currently considered down."""
    l1_entries: int
    l1_bytes: int
    l1_evictions: int

    @property
    def hit_rate(self) -> float:
        """Share of cacheable requests answered without an upstream call of their own."""
        return (self.requests - self.misses) / self.requests if self.requests else 0.0


@dataclass(slots=True)
class _Counters:
    requests: int = 0
    l1_hits: int = 0
    l2_hits: int = 0
    misses: int = 0
    coalesced: int = 0
    bypassed: int = 0
    l2_errors: int = 0
    l2_skipped: int = 0
    l2_outages: int = 0


class ResponseCache:
    """Cached model answers in two tiers: an in-process L1 and an optional shared L2.

    A read checks L1, then L2 (copying an L2 hit into L1). When L2 is unreachable the
    cache logs one warning, counts it, serves from L1 + upstream and probes L2 again every
    `l2_retry_s` seconds (one operation per interval, not every request), so a Redis that
    comes back is used again without a restart. One cache may serve many `CachedModel`s:
    keys carry the tenant and the model identity.
    """

    def __init__(
        self,
        l1: MemoryStore | None = None,
        l2: CacheStore | None = None,
        *,
        l2_retry_s: float = 1.0,
        l1_ttl_from_l2_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.l1 = l1 if l1 is not None else MemoryStore()
        self.l2 = l2
        self.l2_retry_s = l2_retry_s
        """Seconds between probes of a shared store found unreachable."""
        self.l1_ttl_from_l2_s = l1_ttl_from_l2_s
        """The longest an entry copied from L2 stays in L1 (L2 does not say how long the
        entry has left, and another instance may have replaced it)."""
        self._clock = clock
        self._counters = _Counters()
        self._degraded = False
        self._next_probe = 0.0
        self._flights: dict[str, Flight] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"ResponseCache(l1={self.l1.max_entries} entries, l2={self.l2!r})"

    def stats(self) -> CacheStats:
        """The counters so far, the degraded flag and L1's size."""
        c = self._counters
        return CacheStats(
            requests=c.requests,
            l1_hits=c.l1_hits,
            l2_hits=c.l2_hits,
            misses=c.misses,
            coalesced=c.coalesced,
            bypassed=c.bypassed,
            l2_errors=c.l2_errors,
            l2_skipped=c.l2_skipped,
            l2_outages=c.l2_outages,
            degraded=self._degraded,
            l1_entries=len(self.l1),
            l1_bytes=self.l1.size_bytes,
            l1_evictions=self.l1.evictions,
        )

    # ---- plain reads and writes -------------------------------------------------------

    async def get(self, key: str) -> CacheEntry | None:
        """The entry under `key` from L1, else L2 (then copied into L1); uncounted."""
        entry = self.l1.get(key)
        if entry is None:
            entry = await self._get_shared(key, self.l1_ttl_from_l2_s)
        return entry

    async def set(self, key: str, entry: CacheEntry, ttl_s: float) -> None:
        """Store `entry` in L1 and L2 for `ttl_s` seconds."""
        raw = self._set_local(key, entry, ttl_s)
        await self._set_shared(key, raw, ttl_s)

    async def flush(self) -> None:
        """Wait until every flight and every pending L2 write has finished."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def aclose(self) -> None:
        """Finish pending writes, then close the shared store."""
        await self.flush()
        if self.l2 is not None:
            await self.l2.aclose()

    # ---- the request path (used by CachedModel) ---------------------------------------

    def lookup(self, key: str) -> CacheEntry | None:
        """Count one cacheable request; its L1 entry, if any."""
        self._counters.requests += 1
        entry = self.l1.get(key)
        if entry is not None:
            self._counters.l1_hits += 1
        return entry

    def note_bypass(self) -> None:
        """Count one request sent upstream uncached."""
        self._counters.bypassed += 1

    def join_or_start(self, key: str, resolve: Resolver, ttl_s: float) -> tuple[Flight, bool]:
        """The flight resolving `key`, joined (True) or started now (False); the caller is
        counted as one of its consumers and must call `leave` when done with it."""
        flight = self._flights.get(key)
        joined = flight is not None
        if flight is None:
            flight = self._flights[key] = Flight(key)
            # The flight serves many requests: it must not carry the starter's cache-hit
            # probe (metering), or a nested cache's hit would be booked on that request.
            context = contextvars.copy_context()
            context.run(current_probe.set, None)
            task = asyncio.get_running_loop().create_task(
                self._fly(flight, resolve, ttl_s), context=context
            )
            flight.task = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._counters.coalesced += 1
        flight.consumers += 1
        return flight, joined

    def leave(self, flight: Flight) -> None:
        """A consumer is done; the last one to leave an unfinished flight cancels it."""
        flight.consumers -= 1
        if flight.consumers == 0 and not flight.done:
            self._unregister(flight)
            if flight.task is not None:
                flight.task.cancel()

    async def _fly(self, flight: Flight, resolve: Resolver, ttl_s: float) -> None:
        try:
            entry = await self._get_shared(flight.key, ttl_s)
            from_shared = entry is not None
            if entry is None:
                self._counters.misses += 1
                entry = await resolve(flight)
            else:
                self._counters.l2_hits += 1
            raw = None
            if entry is not None and not from_shared:  # a fresh answer: into L1 now
                raw = self._set_local(flight.key, entry, ttl_s)
        except Exception as exc:  # delivered to every consumer, not swallowed
            self._unregister(flight)
            flight.fail(exc)
            return
        except BaseException:  # cancelled (no consumer left), or the process is stopping
            self._unregister(flight)
            flight.abandon()
            raise
        self._unregister(flight)
        flight.succeed(entry, from_shared=from_shared)
        if raw is not None:
            await self._set_shared(flight.key, raw, ttl_s)

    def _unregister(self, flight: Flight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    # ---- tiers ------------------------------------------------------------------------

    def _set_local(self, key: str, entry: CacheEntry, ttl_s: float) -> bytes:
        raw = entry.encode()
        self.l1.set(key, entry, size=len(raw), ttl_s=ttl_s)
        return raw

    async def _get_shared(self, key: str, ttl_s: float) -> CacheEntry | None:
        if self.l2 is None or not self._l2_usable():
            return None
        try:
            raw = await self.l2.get(key)
        except CacheStoreError as exc:
            self._l2_failed(exc, "get")
            return None
        self._l2_ok()
        if raw is None:
            return None
        try:
            entry = CacheEntry.decode(raw)
        except CorruptEntryError as exc:
            self._counters.l2_errors += 1
            logger.warning("cache.l2_corrupt_entry", extra={"key": key, "error": str(exc)})
            return None
        # L2 does not tell how long the entry has left: bound how long L1 keeps the copy.
        self.l1.set(key, entry, size=len(raw), ttl_s=min(ttl_s, self.l1_ttl_from_l2_s))
        return entry

    async def _set_shared(self, key: str, raw: bytes, ttl_s: float) -> None:
        if self.l2 is None or ttl_s <= 0 or not self._l2_usable():
            return
        try:
            await self.l2.set(key, raw, ttl_s)
        except CacheStoreError as exc:
            self._l2_failed(exc, "set")
            return
        self._l2_ok()

    # ---- degraded mode ----------------------------------------------------------------

    def _l2_usable(self) -> bool:
        if not self._degraded:
            return True
        now = self._clock()
        if now < self._next_probe:
            self._counters.l2_skipped += 1
            return False
        self._next_probe = now + self.l2_retry_s  # this operation is the one probe
        return True

    def _l2_failed(self, exc: CacheStoreError, operation: str) -> None:
        self._counters.l2_errors += 1
        if not isinstance(exc, CacheStoreUnavailableError):
            logger.warning(
                "cache.l2_error", extra={"store": repr(self.l2), "op": operation, "error": str(exc)}
            )
            return
        self._next_probe = self._clock() + self.l2_retry_s
        if not self._degraded:
            self._degraded = True
            self._counters.l2_outages += 1
            logger.warning(
                "cache.l2_unavailable: serving from L1 until it is back",
                extra={
                    "store": repr(self.l2),
                    "op": operation,
                    "error": str(exc),
                    "retry_s": self.l2_retry_s,
                },
            )

    def _l2_ok(self) -> None:
        if self._degraded:
            self._degraded = False
            logger.warning("cache.l2_recovered", extra={"store": repr(self.l2)})
