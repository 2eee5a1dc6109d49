"""The Redis Streams event bus against a real Redis: replay then follow, resume after a
seq (exactly once, across bus instances), end of run, expiry, idempotent writes, and an
outage (events buffered and delivered once Redis is back; followers told clearly).

Tests use Redis database 13 with a unique key prefix each; the outage test starts its own
private redis-server on a free port.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from agentguild.runtime import RedisEventBus
from agentguild.types import JSONObject

EVENTS_DB = 13


def _event(n: int) -> JSONObject:
    return {"type": "text_delta", "data": {"text": f"t{n}", "agent": "a"}}


def _done(run_id: str) -> JSONObject:
    return {"type": "run_completed", "data": {"run_id": run_id, "status": "completed"}}


@pytest.fixture
def events_url(redis_url: str) -> str:
    """The machine's Redis, database 13 (kept apart from the cache and limit tests)."""
    base, _, _db = redis_url.rpartition("/")
    return f"{base}/{EVENTS_DB}"


@pytest.fixture
async def prefix(events_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    value = f"agentguild-test:events:{uuid.uuid4().hex}:"
    yield value
    client = aioredis.Redis.from_url(events_url)
    keys = [key async for key in client.scan_iter(match=value + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def bus(events_url: str, prefix: str) -> AsyncIterator[RedisEventBus]:
    bus = RedisEventBus(events_url, prefix=prefix, block_ms=1000)
    yield bus
    await bus.aclose()


@pytest.fixture
async def other_bus(events_url: str, prefix: str) -> AsyncIterator[RedisEventBus]:
    """A second bus on the same Redis: what another API instance would have."""
    bus = RedisEventBus(events_url, prefix=prefix, block_ms=1000)
    yield bus
    await bus.aclose()


@pytest.fixture
async def client(events_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(events_url)
    yield client
    await client.aclose()


async def _rest(events: AsyncGenerator[tuple[int, JSONObject], None]) -> list[int]:
    return [seq async for seq, _ in events]


async def test_a_subscriber_on_another_instance_gets_past_then_live_events(
    bus: RedisEventBus, other_bus: RedisEventBus
) -> None:
    log = bus.run_log("run1")
    log.append(_event(1))
    log.append(_event(2))
    events = other_bus.subscribe("run1")

    replayed = [await anext(events), await anext(events)]
    live = asyncio.ensure_future(anext(events))
    log.append(_event(3))
    third = await live
    log.append(_done("run1"))
    log.close()

    assert replayed == [(1, _event(1)), (2, _event(2))]
    assert third == (3, _event(3))
    assert await _rest(events) == [4]


async def test_a_subscriber_can_wait_for_a_run_that_has_not_started(
    bus: RedisEventBus, other_bus: RedisEventBus
) -> None:
    waiting = asyncio.ensure_future(_rest(other_bus.subscribe("later")))
    log = bus.run_log("later")
    log.append(_event(1))
    log.append(_done("later"))
    log.close()

    assert await waiting == [1, 2]


async def test_a_reconnecting_client_gets_each_missed_event_exactly_once(
    bus: RedisEventBus, other_bus: RedisEventBus
) -> None:
    log = bus.run_log("run2")
    for n in range(1, 6):
        log.append(_event(n))
    first = bus.subscribe("run2")
    seen = [await anext(first) for _ in range(3)]
    await first.aclose()  # the client disconnects after event 3
    for n in range(6, 9):
        log.append(_event(n))
    log.append(_done("run2"))
    log.close()

    seen += [item async for item in other_bus.subscribe("run2", after_seq=seen[-1][0])]

    assert [seq for seq, _ in seen] == list(range(1, 10))
    assert [event for _, event in seen][:8] == [_event(n) for n in range(1, 9)]


async def test_resuming_after_the_last_event_ends_at_once(bus: RedisEventBus) -> None:
    log = bus.run_log("run3")
    log.append(_event(1))
    log.append(_done("run3"))
    log.close()
    await bus.flush()

    assert await _rest(bus.subscribe("run3", after_seq=2)) == []
    assert await _rest(bus.subscribe("run3", after_seq=1)) == [2]


async def test_closing_a_run_ends_subscribers_without_a_terminal_event(
    bus: RedisEventBus, other_bus: RedisEventBus
) -> None:
    log = bus.run_log("run4")
    log.append(_event(1))
    events = other_bus.subscribe("run4")
    assert (await anext(events))[0] == 1

    log.close()

    assert await _rest(events) == []
    assert await _rest(other_bus.subscribe("run4", after_seq=1)) == []


async def test_streams_expire_while_running_and_sooner_after_the_end(
    events_url: str, prefix: str, client: aioredis.Redis
) -> None:
    bus = RedisEventBus(events_url, prefix=prefix, ttl_s=3600, finished_ttl_s=120)
    log = bus.run_log("run5")
    log.append(_event(1))
    await bus.flush()
    running_ttl = await client.ttl(bus.key("run5"))
    log.close()
    await bus.flush()
    finished_ttl = await client.ttl(bus.key("run5"))
    await bus.aclose()

    assert 120 < running_ttl <= 3600
    assert 0 < finished_ttl <= 120


async def test_republishing_an_event_does_not_duplicate_it(
    bus: RedisEventBus, client: aioredis.Redis
) -> None:
    bus.publish("run6", 1, _event(1))
    bus.publish("run6", 1, _event(1))  # a retry after an unacknowledged write
    bus.publish("run6", 2, _done("run6"))
    await bus.flush()

    assert await client.xlen(bus.key("run6")) == 2
    assert await _rest(bus.subscribe("run6")) == [1, 2]
    assert bus.stats.published == 2
    assert bus.stats.dropped == 0


async def test_has_run_sees_streams_of_any_instance(
    bus: RedisEventBus, other_bus: RedisEventBus
) -> None:
    bus.publish("run7", 1, _event(1))
    await bus.flush()

    assert await other_bus.has_run("run7")
    assert not await other_bus.has_run("no-such-run")


# -- outage ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def private_redis_port() -> int:
    """A free port for a private redis-server the test starts itself."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    return _free_port()


def _start_redis(port: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    options = {"port": str(port), "bind": "127.0.0.1", "save": "", "appendonly": "no"}
    command = ["redis-server", "--dir", str(tmp_path)]
    for name, value in options.items():
        command += [f"--{name}", value]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


async def test_publishing_survives_an_outage_and_delivers_once_redis_is_back(
    private_redis_port: int, tmp_path: Path
) -> None:
    url = f"redis://127.0.0.1:{private_redis_port}/0"
    bus = RedisEventBus(url, prefix="t:", retry_s=0.05, timeout_s=0.5, block_ms=1000)
    log = bus.run_log("run8")
    log.append(_event(1))  # Redis is down: neither raises
    log.append(_done("run8"))
    log.close()
    down = [item async for item in bus.subscribe("run8")]

    server = _start_redis(private_redis_port, tmp_path)
    try:
        await bus.flush()  # the writer retries until the server accepts the events
        delivered = await _rest(bus.subscribe("run8"))
    finally:
        await bus.aclose()
        server.terminate()
        server.wait()

    assert [event["type"] for _, event in down] == ["error"]
    assert down[0][1]["data"]["type"] == "EventBusUnavailable"
    assert "Last-Event-ID" in down[0][1]["data"]["message"]
    assert bus.stats.write_errors >= 1
    assert bus.stats.subscriber_errors == 1
    assert delivered == [1, 2]


async def test_a_taken_over_run_continues_the_numbering_on_another_instance(
    bus: RedisEventBus, other_bus: RedisEventBus
) -> None:
    old = bus.run_log("run9")
    old.append(_event(1))
    old.append(_event(2))
    old.close()  # the old process stopped (and wrote the end of the stream)
    await bus.flush()

    log = await other_bus.resume_log("run9")
    following = asyncio.ensure_future(_rest(bus.subscribe("run9", after_seq=1)))
    seq = log.append(_event(3))
    log.append(_done("run9"))
    log.close()

    assert seq == 3
    assert await following == [2, 3, 4]
    assert [seq async for seq, _ in log.follow()] == [1, 2, 3, 4]
