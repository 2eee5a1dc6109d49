"""Workers per queue from a slow broker query, cached so a metrics scrape never waits.

Celery's `inspect` waits up to its timeout (a second) for worker replies. `WorkerCensus`
answers from its last result and refreshes it in the background once it is older than
`ttl_s`; only the first call waits for a query.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

WORKERS_TTL_S = 15.0
"""How old the worker counts may get before a call starts refreshing them."""


class WorkerCensus:
    """The last known workers per queue, refreshed in the background when stale."""

    def __init__(
        self,
        query: Callable[[], dict[str, int]],
        *,
        ttl_s: float = WORKERS_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.query = query
        """Blocking: counts the workers per queue (run in a thread)."""
        self.ttl_s = ttl_s
        self.clock = clock
        self._counts: dict[str, int] | None = None
        self._at = 0.0
        self._refresh: asyncio.Task[None] | None = None

    async def get(self) -> dict[str, int]:
        """Workers per queue as last counted (empty if no count has succeeded yet)."""
        stale = self._counts is None or self.clock() - self._at >= self.ttl_s
        if stale and self._refresh is None:
            self._refresh = asyncio.create_task(self._query(), name="agentguild-worker-census")
        if self._counts is None and self._refresh is not None:
            await asyncio.shield(self._refresh)
        return dict(self._counts or {})

    async def refreshed(self) -> None:
        """Wait for a refresh in progress, if any."""
        if self._refresh is not None:
            await asyncio.shield(self._refresh)

    async def aclose(self) -> None:
        """Stop waiting for a refresh in progress."""
        if self._refresh is not None:
            self._refresh.cancel()
            await asyncio.gather(self._refresh, return_exceptions=True)

    async def _query(self) -> None:
        try:
            self._counts = await asyncio.to_thread(self.query)
        except Exception as exc:
            # Keep the last counts; try again once they are stale.
            logger.warning("queue.workers_unknown", extra={"error": f"{type(exc).__name__}: {exc}"})
        finally:
            self._at = self.clock()
            self._refresh = None
