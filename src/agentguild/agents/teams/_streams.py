"""Running several event streams at once, interleaved, and interruptibly."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class Interrupted(Exception):
    """The watched awaitable completed before the streams did; they were cancelled."""


class _End:
    __slots__ = ()


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


_END = _End()


class Watch:
    """A background task (a termination condition's `wait()`) streams are raced against."""

    def __init__(self, awaitable: Awaitable[Any] | None) -> None:
        self.future: asyncio.Future[Any] | None = (
            asyncio.ensure_future(awaitable) if awaitable is not None else None
        )

    @property
    def done(self) -> bool:
        return self.future is not None and self.future.done()

    async def close(self) -> None:
        if self.future is not None and not self.future.done():
            self.future.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.future


async def interleave(
    streams: Sequence[AsyncIterator[T]], watch: Watch | None = None
) -> AsyncGenerator[tuple[int, T], None]:
    """Yield `(index, item)` from all `streams` as items arrive, each in its own task.

    If a stream raises, the others are cancelled and the error propagates. If `watch`
    completes first, every stream is cancelled and `Interrupted` is raised. Leaving the
    loop early cancels the streams too, once the generator is closed: iterate it inside
    `contextlib.aclosing` so that happens at once.
    """
    queue: asyncio.Queue[tuple[int, T | _End | _Failure]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[T]) -> None:
        try:
            async for item in stream:
                queue.put_nowait((index, item))
        except Exception as exc:  # handed to the consumer, which re-raises it
            queue.put_nowait((index, _Failure(exc)))
        else:
            queue.put_nowait((index, _END))
        finally:
            await aclose(stream)

    tasks = [asyncio.create_task(pump(i, stream)) for i, stream in enumerate(streams)]
    watched = watch.future if watch is not None else None
    remaining = len(tasks)
    try:
        while remaining:
            if watched is not None and watched.done():
                raise Interrupted
            if watched is None or not queue.empty():
                index, item = await queue.get()
            else:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait((getter, watched), return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    raise Interrupted
                index, item = getter.result()
            if isinstance(item, _End):
                remaining -= 1
            elif isinstance(item, _Failure):
                raise item.error
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def aclose(stream: AsyncIterator[object]) -> None:
    """Close an async generator (any async iterator with an `aclose`)."""
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        await closer()
