"""Cancel requests between instances: "stop run X, wherever it executes".

A run executes in one process (an API instance, or a queue worker); a cancel request may
reach any instance. The instance that gets it publishes the run id on the cancel channel;
every runner listening on the channel cancels the run if it executes it.

- `LocalCancels` (embedded default): within this process.
- `RedisCancels` (`server.redis_url` set, with the Redis event bus): a Redis Pub/Sub
  channel shared by every instance and worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .events import shared_bus_url

if TYPE_CHECKING:
    from .._platform_settings import ServerSettings

__all__ = ["CancelChannel", "LocalCancels", "RedisCancels", "cancel_channel_from_settings"]

logger = logging.getLogger(__name__)

CancelListener = Callable[[str], None]
"""Called with the id of a run to cancel."""


class CancelChannel(Protocol):
    """Where cancel requests go, and where runners hear them."""

    async def publish(self, run_id: str) -> None:
        """Ask whichever process executes the run to cancel it (never raises for an
        outage: it is logged)."""
        ...

    async def listen(self, listener: CancelListener) -> None:
        """Call `listener` with every run id published from now on (any instance)."""
        ...

    async def aclose(self) -> None:
        """Stop listening and release connections."""
        ...


class LocalCancels:
    """Cancel requests within this process."""

    def __init__(self) -> None:
        self._listeners: list[CancelListener] = []

    async def publish(self, run_id: str) -> None:
        for listener in self._listeners:
            listener(run_id)

    async def listen(self, listener: CancelListener) -> None:
        self._listeners.append(listener)

    async def aclose(self) -> None:
        self._listeners.clear()


class RedisCancels:
    """Cancel requests on a Redis Pub/Sub channel (every instance sharing the Redis)."""

    def __init__(
        self, url: str, *, channel: str = "agentguild:run-cancel", retry_s: float = 1.0
    ) -> None:
        import redis.asyncio as aioredis

        self.channel = channel
        self.retry_s = retry_s
        self._client: Any = aioredis.Redis.from_url(url, socket_connect_timeout=2.0)
        self._listeners: list[CancelListener] = []
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def publish(self, run_id: str) -> None:
        try:
            await self._client.publish(self.channel, run_id)
        except Exception as exc:
            logger.warning("cancels.publish_failed", extra={"run_id": run_id, "error": str(exc)})

    async def listen(self, listener: CancelListener) -> None:
        """Add a listener; the first one subscribes (this returns once subscribed)."""
        self._listeners.append(listener)
        if self._task is None:
            self._task = asyncio.create_task(self._receive(), name="agentguild-cancels")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscribed.wait(), 5.0)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._client.aclose()

    async def _receive(self) -> None:
        while True:
            try:
                async with self._client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._subscribed.set()
                    async for message in pubsub.listen():
                        self._deliver(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("cancels.listen_failed", extra={"error": str(exc)})
                await asyncio.sleep(self.retry_s)

    def _deliver(self, message: dict[str, Any]) -> None:
        data = message.get("data")
        if not isinstance(data, bytes | str):
            return
        run_id = data.decode() if isinstance(data, bytes) else data
        for listener in self._listeners:
            try:
                listener(run_id)
            except Exception:
                logger.exception("cancels.listener_failed", extra={"run_id": run_id})


def cancel_channel_from_settings(server: ServerSettings) -> CancelChannel:
    """Redis Pub/Sub where run events go through Redis (see `shared_bus_url`), else
    in-process."""
    url = shared_bus_url(server)
    return LocalCancels() if url is None else RedisCancels(url)
