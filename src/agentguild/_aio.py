"""Small asyncio helpers shared across the package."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def unbroken(write: Awaitable[T]) -> T:
    """Await a write that cancelling the caller must not interrupt half-way (a database
    transaction cut off mid-commit can hold SQLite's write lock); a cancellation arriving
    meanwhile is raised once the write is done."""
    task = asyncio.ensure_future(write)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


async def aclose(iterator: AsyncIterator[Any]) -> None:
    """Close an async iterator if it can be closed (async generators can; `Agent.run` is
    typed as an AsyncIterator but is one in practice)."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


async def poll_until(
    done: Callable[[], Awaitable[bool]],
    *,
    timeout_s: float | None = None,
    first_s: float = 0.02,
    max_s: float = 0.5,
) -> bool:
    """Call `done` until it says True, waiting between calls (doubling from `first_s` up
    to `max_s`); False if `timeout_s` passed first. For state another process changes
    (a row in the database), where there is nothing to wait on."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    delay = first_s
    while not await done():
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            delay = min(delay, left)
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_s)
    return True
