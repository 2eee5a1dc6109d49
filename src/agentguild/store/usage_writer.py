"""Batched usage recording for hot paths: one INSERT per batch, not one transaction per call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import insert

from agentguild.security.principal import Principal

from .models import UsageRecord, utcnow

if TYPE_CHECKING:
    from .db import Database

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UsageEntry:
    """One model call's usage, waiting to be written."""

    tenant_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    user_id: str | None = None
    api_key_id: str | None = None
    run_id: str | None = None
    cost_usd: float = 0.0
    cached: bool = False
    created_at: datetime = field(default_factory=utcnow)


class UsageWriter:
    """Buffers usage records and writes them in batches.

    A batch is written when `max_batch` records are waiting or `flush_interval_s` has
    passed since the last write. A failed write keeps its records for the next attempt
    (up to `max_pending`; beyond that the oldest are dropped, with an error log).

    ```python
    writer = UsageWriter(db)
    await writer.start()
    writer.record(principal, model="qwen-plus", prompt_tokens=12, completion_tokens=30)
    await writer.close()   # writes what is left
    ```
    """

    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 200,
        flush_interval_s: float = 1.0,
        max_pending: int = 100_000,
    ) -> None:
        self._db = db
        self._max_batch = max_batch
        self._interval = flush_interval_s
        self._max_pending = max_pending
        self._pending: deque[UsageEntry] = deque()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        """Records dropped because writes kept failing and the buffer was full."""

    @property
    def pending(self) -> int:
        """Records waiting to be written."""
        return len(self._pending)

    async def start(self) -> None:
        """Start the background flushing task."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="agentguild-usage-writer")

    def record(
        self,
        principal: Principal,
        *,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        run_id: str | None = None,
        cost_usd: float = 0.0,
        cached: bool = False,
    ) -> None:
        """Queue one call's usage for `principal` (never blocks, never does I/O)."""
        self.add(
            UsageEntry(
                tenant_id=principal.tenant_id,
                user_id=principal.user_id,
                api_key_id=principal.api_key_id,
                model=model,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                run_id=run_id,
                cost_usd=cost_usd,
                cached=cached,
            )
        )

    def add(self, entry: UsageEntry) -> None:
        """Queue a prepared entry."""
        self._pending.append(entry)
        if len(self._pending) > self._max_pending:
            self._pending.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:  # say it, without flooding logs
                logger.error("usage.dropped", extra={"dropped_total": self.dropped})
        if len(self._pending) >= self._max_batch:
            self._wake.set()

    async def flush(self) -> int:
        """Write everything queued now; how many records were written. Raises on failure
        (the records stay queued)."""
        written = 0
        async with self._lock:
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(self._max_batch, self.pending))]
                try:
                    async with self._db.session() as session:
                        await session.execute(insert(UsageRecord), [asdict(e) for e in batch])
                except BaseException:
                    self._pending.extendleft(reversed(batch))
                    raise
                written += len(batch)
        return written

    async def close(self) -> None:
        """Stop the background task and write what is left."""
        if self._task is not None:
            # Between writes only: a write cancelled after its commit would put its batch
            # back and write it twice.
            async with self._lock:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                # Keep running: the records stay queued and the next tick retries.
                logger.exception("usage.flush_failed", extra={"pending": self.pending})
