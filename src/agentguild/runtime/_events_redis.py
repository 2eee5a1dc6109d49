"""`RedisEventBus`: run events in Redis Streams, followed from any instance.

One stream per run, `<prefix><run_id>`. Event `seq` is entry `<seq>-0` with field `e`
(the encoded event as JSON); the end of the run is entry `<last seq>-1` with field `end`.
So entry ids map 1:1 to SSE ids: a follower resuming after `n` reads from id `n-0`, on
any instance, and gets every later event once.

Publishing never blocks or fails the run: events queue in this process and one writer
task sends them in order, pipelined. While Redis is down the queue holds them (up to
`buffer_limit`; beyond that new events are dropped and counted), the writer logs once and
retries; explicit ids make a retried write idempotent (Redis refuses an id it has).
A follower that loses Redis gets an `error` event (`EventBusUnavailable`) and the stream
ends; it can reconnect with its `Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from ..errors import ConfigError
from ..types import JSONObject
from .events import TERMINAL_EVENT, RunLog

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["EventBusCollector", "EventBusStats", "RedisEventBus"]

logger = logging.getLogger(__name__)

REDIS_INSTALL_HINT = "pip install 'agentguild[redis]'"
_BATCH = 500
_END = b"end"
_EVENT = b"e"


@dataclass(slots=True)
class EventBusStats:
    """Counters of a `RedisEventBus` (exported as metrics by whoever serves them)."""

    published: int = 0
    """Events written to Redis."""
    write_errors: int = 0
    """Failed attempts to write a batch (each retried while Redis is unreachable)."""
    dropped: int = 0
    """Events never written: the buffer was full, or Redis refused them."""
    subscriber_errors: int = 0
    """Followers cut off by a Redis failure."""


class EventBusCollector(Collector):
    """Prometheus counters `agentguild_event_bus_<stat>_total` of a bus's `EventBusStats`."""

    def __init__(self, stats: EventBusStats) -> None:
        self.stats = stats

    def describe(self) -> list[Metric]:
        return []  # no fixed names to reserve; `collect` is cheap

    def collect(self) -> Iterator[Metric]:
        for stat in dataclass_fields(self.stats):
            family = CounterMetricFamily(
                f"agentguild_event_bus_{stat.name}", f"Run event bus: {stat.name} (Redis)."
            )
            family.add_metric([], getattr(self.stats, stat.name))
            yield family


_Op = tuple[str, int, bytes | None]  # run id, seq, event JSON (None: the end at seq)


class RedisEventBus:
    """The production event bus: one Redis Stream per run (see the module docs).

    Give a `url` (the bus owns its clients) or a `client` (used as is, not closed; its
    socket timeout must exceed `block_ms`). Streams expire `ttl_s` after their last event
    and `finished_ttl_s` after the run's end; each keeps about `maxlen` events at most.
    """

    shared = True

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        prefix: str = "agentguild:run-events:",
        ttl_s: int = 86_400,
        finished_ttl_s: int = 86_400,
        maxlen: int = 100_000,
        block_ms: int = 5_000,
        buffer_limit: int = 100_000,
        retry_s: float = 1.0,
        timeout_s: float = 2.0,
        close_timeout_s: float = 5.0,
    ) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.exceptions import ConnectionError as RedisConnectionError
            from redis.exceptions import RedisError, ResponseError
            from redis.exceptions import TimeoutError as RedisTimeoutError
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError(
                f"RedisEventBus needs the redis package: {REDIS_INSTALL_HINT}"
            ) from exc
        if (url is None) == (client is None):
            raise ConfigError("RedisEventBus needs exactly one of `url` or `client`")
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.finished_ttl_s = finished_ttl_s
        self.maxlen = maxlen
        self.block_ms = block_ms
        self.buffer_limit = buffer_limit
        self.retry_s = retry_s
        self.close_timeout_s = close_timeout_s
        self.stats = EventBusStats()
        self._unavailable: tuple[type[BaseException], ...] = (
            RedisConnectionError,
            RedisTimeoutError,
            TimeoutError,
            OSError,
        )
        self._redis_error: type[BaseException] = RedisError
        self._response_error: type[BaseException] = ResponseError
        self._owns_clients = client is None
        if client is None:
            writer: Redis = aioredis.Redis.from_url(
                str(url), socket_connect_timeout=timeout_s, socket_timeout=timeout_s
            )
            # Followers block in XREAD for up to `block_ms`: a longer socket timeout.
            reader: Redis = aioredis.Redis.from_url(
                str(url),
                socket_connect_timeout=timeout_s,
                socket_timeout=block_ms / 1000 + timeout_s,
            )
        else:
            writer = reader = client
        self._client = writer
        self._reader = reader
        self._pending: deque[_Op] = deque()
        self._last_seq: dict[str, int] = {}
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._writer: asyncio.Task[None] | None = None
        self._degraded = False
        self._closing = False

    def __repr__(self) -> str:
        return f"RedisEventBus(prefix={self.prefix!r}, pending={len(self._pending)})"

    def key(self, run_id: str) -> str:
        """The Redis key of a run's stream."""
        return self.prefix + run_id

    def run_log(self, run_id: str) -> RunLog:
        """A local log of a run executing here; what is appended goes to Redis too."""
        return RunLog(run_id=run_id, sink=self)

    async def resume_log(self, run_id: str) -> RunLog:
        """A local log of a run taken over here: the stream's events so far (its end
        marker, if the old process wrote one, is removed), new ones numbered after them.
        Redis must be reachable (a takeover without the history would reuse SSE ids)."""
        key = self.key(run_id)
        entries: Any = await self._client.xrange(key)
        history: list[JSONObject] = []
        for entry_id, fields in entries:
            if _END in fields:
                await self._client.xdel(key, entry_id)
                continue
            seq = int(entry_id.split(b"-", 1)[0])
            while len(history) < seq - 1:  # trimmed or dropped: keep the numbering
                history.append({"type": "gap", "data": {}})
            history.append(orjson.loads(fields[_EVENT]))
        if history:
            self._last_seq[run_id] = len(history)
        return RunLog(run_id=run_id, sink=self, history=history)

    def publish(self, run_id: str, seq: int, event: JSONObject) -> None:
        """Queue event `seq` of the run for Redis (see the module docs); never raises."""
        if len(self._pending) >= self.buffer_limit:
            self.stats.dropped += 1
            logger.error(
                "events.buffer_full",
                extra={"run_id": run_id, "seq": seq, "buffered": len(self._pending)},
            )
            return
        try:
            payload = orjson.dumps(event)
        except TypeError:
            self.stats.dropped += 1
            logger.exception("events.unencodable", extra={"run_id": run_id, "seq": seq})
            return
        self._last_seq[run_id] = seq
        self._enqueue((run_id, seq, payload))

    def close_run(self, run_id: str) -> None:
        """Queue the end of the run's stream (and its shorter expiry)."""
        self._enqueue((run_id, self._last_seq.pop(run_id, 0), None))

    async def flush(self) -> None:
        """Wait until every queued event is in Redis (forever while Redis is down)."""
        await self._drained.wait()

    async def subscribe(
        self, run_id: str, after_seq: int = 0
    ) -> AsyncGenerator[tuple[int, JSONObject], None]:
        """Events of the run after `after_seq`, then live ones until its end (see
        `EventBus.subscribe`). If Redis fails, an `error` event ends the stream."""
        key = self.key(run_id)
        seq = after_seq = max(after_seq, 0)
        # From the event at `after_seq` itself: if that was the last one, stop at once.
        last_id: bytes | str = f"{after_seq - 1}-1" if after_seq else "0-0"
        while True:
            try:
                response: Any = await self._reader.xread(
                    {key: last_id}, count=_BATCH, block=self.block_ms
                )
            except (*self._unavailable, self._redis_error) as exc:
                self.stats.subscriber_errors += 1
                logger.warning(
                    "events.subscribe_failed", extra={"run_id": run_id, "error": str(exc)}
                )
                yield seq, _unavailable_event(exc)
                return
            for _stream, entries in response or ():
                for entry_id, fields in entries:
                    last_id = entry_id
                    if _END in fields:
                        return
                    entry_seq = int(entry_id.split(b"-", 1)[0])
                    event: JSONObject = orjson.loads(fields[_EVENT])
                    if entry_seq > after_seq:
                        seq = entry_seq
                        yield seq, event
                    if event.get("type") == TERMINAL_EVENT:
                        return

    async def has_run(self, run_id: str) -> bool:
        """Whether the run's stream exists (False, logged, if Redis is unreachable)."""
        try:
            return bool(await self._client.exists(self.key(run_id)))
        except self._redis_error as exc:
            logger.warning("events.lookup_failed", extra={"run_id": run_id, "error": str(exc)})
            return False

    async def aclose(self) -> None:
        """Write what is queued (for at most `close_timeout_s`), then close the clients."""
        self._closing = True
        self._wakeup.set()
        if self._writer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._writer), self.close_timeout_s)
            except TimeoutError:
                self._writer.cancel()
                await asyncio.gather(self._writer, return_exceptions=True)
        if self._pending:
            self.stats.dropped += len(self._pending)
            logger.error("events.unwritten_at_close", extra={"events": len(self._pending)})
            self._pending.clear()
            self._drained.set()
        if self._owns_clients:
            await self._client.aclose()
            await self._reader.aclose()

    def _enqueue(self, op: _Op) -> None:
        self._pending.append(op)
        self._drained.clear()
        self._wakeup.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._write_loop(), name="agentguild-event-bus-writer"
            )

    async def _write_loop(self) -> None:
        while True:
            if not self._pending:
                self._drained.set()
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [self._pending[i] for i in range(min(_BATCH, len(self._pending)))]
            try:
                await self._write(batch)
            except (*self._unavailable, self._redis_error) as exc:
                self.stats.write_errors += 1
                if not self._degraded:
                    self._degraded = True
                    logger.warning(
                        "events.redis_unavailable",
                        extra={"error": str(exc), "buffered": len(self._pending)},
                    )
                if self._closing:
                    return  # aclose reports what is left
                await asyncio.sleep(self.retry_s)
                continue
            for _ in batch:
                self._pending.popleft()
            if self._degraded:
                self._degraded = False
                logger.info("events.redis_recovered")

    async def _write(self, batch: list[_Op]) -> None:
        pipe = self._client.pipeline(transaction=False)
        expiry: dict[str, int] = {}
        for run_id, seq, payload in batch:
            key = self.key(run_id)
            if payload is None:
                pipe.xadd(key, {_END: b"1"}, id=f"{seq}-1")
                expiry[key] = self.finished_ttl_s
            else:
                pipe.xadd(
                    key, {_EVENT: payload}, id=f"{seq}-0", maxlen=self.maxlen, approximate=True
                )
                expiry.setdefault(key, self.ttl_s)
        for key, ttl_s in expiry.items():
            pipe.expire(key, ttl_s)
        results = await pipe.execute(raise_on_error=False)
        for op, result in zip(batch, results, strict=False):
            if isinstance(result, self._unavailable):
                raise result
            if isinstance(result, self._response_error):
                if "equal or smaller" in str(result):
                    continue  # written before a retry: ids make writes idempotent
                self.stats.dropped += 1
                logger.error(
                    "events.write_refused",
                    extra={"run_id": op[0], "seq": op[1], "error": str(result)},
                )
            elif op[2] is not None:
                self.stats.published += 1


def _unavailable_event(exc: BaseException) -> JSONObject:
    return {
        "type": "error",
        "data": {
            "type": "EventBusUnavailable",
            "message": (
                f"the run's events are unavailable (redis: {exc}); reconnect with "
                "Last-Event-ID to resume"
            ),
            "agent": "",
        },
    }
