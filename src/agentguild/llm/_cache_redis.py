"""`RedisStore`: the production shared store of the response cache (redis.asyncio)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError
from ._cache_stores import CacheStoreError, CacheStoreUnavailableError

if TYPE_CHECKING:
    from redis.asyncio import Redis

REDIS_INSTALL_HINT = "pip install 'agentguild[redis]'"


class RedisStore:
    """Cache entries in Redis under `prefix + key`, expiring with Redis TTLs.

    Give a `url` (the store builds and owns a client tuned for a cache: short timeouts, one
    immediate retry on a broken connection and none on a timeout, a bounded blocking pool)
    or your own `client` (used as is, and not closed by `aclose`). A dead or slow Redis
    surfaces as `CacheStoreUnavailableError` within about `timeout_s`, and `ResponseCache`
    then serves from L1 until it is back.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        prefix: str = "agentguild:cache:",
        connect_timeout_s: float = 0.25,
        timeout_s: float = 0.25,
        max_connections: int = 64,
    ) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import ConnectionError as RedisConnectionError
            from redis.exceptions import RedisError
            from redis.exceptions import TimeoutError as RedisTimeoutError
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError(f"RedisStore needs the redis package: {REDIS_INSTALL_HINT}") from exc
        if (url is None) == (client is None):
            raise ConfigError("RedisStore needs exactly one of `url` or `client`")
        self.prefix = prefix
        self._unavailable: tuple[type[BaseException], ...] = (
            RedisConnectionError,
            RedisTimeoutError,
            TimeoutError,
            OSError,
        )
        self._failed: type[BaseException] = RedisError
        self._owns_client = client is None
        if client is None:
            pool = aioredis.BlockingConnectionPool.from_url(
                str(url),
                max_connections=max_connections,
                timeout=max(timeout_s, 1.0),  # waiting for a free pooled connection
                socket_connect_timeout=connect_timeout_s,
                socket_timeout=timeout_s,
                # One immediate retry on a broken connection only: after a Redis restart,
                # each pooled connection fails once before it reconnects, and that must
                # not look like a new outage. Timeouts are never retried.
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            )
            client = aioredis.Redis.from_pool(pool)
        self.client: Redis = client

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r})"

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self.client.get(self.prefix + key)
        except self._unavailable as exc:
            raise CacheStoreUnavailableError(f"redis unavailable: {exc}") from exc
        except self._failed as exc:
            raise CacheStoreError(f"redis GET failed: {exc}") from exc
        if value is None:
            return None
        return value if isinstance(value, bytes) else str(value).encode()

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            await self.client.set(self.prefix + key, value, px=max(1, int(ttl_s * 1000)))
        except self._unavailable as exc:
            raise CacheStoreUnavailableError(f"redis unavailable: {exc}") from exc
        except self._failed as exc:
            raise CacheStoreError(f"redis SET failed: {exc}") from exc

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()
