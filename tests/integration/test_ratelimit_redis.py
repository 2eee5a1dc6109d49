"""RedisLimiter against real Redis: atomic GCRA, keys, TTLs, concurrency, degraded mode.

Shared-Redis tests use database 15 and a unique key prefix each; the outage tests start
their own private `redis-server` on a free port, kill -9 it and start it again.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from redis.asyncio import Redis
from redis.crc import key_slot

from agentguild.llm.base import ChatRequest
from agentguild.llm.ratelimit import (
    Decision,
    InMemoryLimiter,
    RateLimit,
    RateLimitedModel,
    RedisLimiter,
    limit_key,
)
from agentguild.llm.scripted import ScriptedModel
from agentguild.types import Message


def _load_property_kit() -> ModuleType:
    """The unit tests' scenario generator and checks (tests/ is not a package)."""
    path = Path(__file__).parents[1] / "unit" / "test_ratelimit_property.py"
    spec = importlib.util.spec_from_file_location("_ratelimit_property_kit", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_kit = _load_property_kit()
check, play, scenarios = _kit.check, _kit.play, _kit.scenarios
REQUEST = ChatRequest([Message.user("hello")], max_tokens=20, tenant_id="acme", caller_id="k1")


def unique_prefix() -> str:
    return f"agentguild-test:rl:{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    value = unique_prefix()
    yield value
    keys = [key async for key in redis.scan_iter(match=f"{{{value}:*")]
    if keys:
        await redis.delete(*keys)


# ---- on the shared Redis -----------------------------------------------------------------


async def test_a_burst_is_admitted_then_calls_are_refused_with_a_wait(
    redis: Redis, prefix: str
) -> None:
    limiter = RedisLimiter(redis)
    key = limit_key("acme", "k1", "gpt", prefix=prefix)
    limit = RateLimit(requests_per_minute=60, burst_requests=3)
    decisions = [await limiter.acquire(key, limit) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert 0.5 < decisions[-1].wait_s <= 1.0  # 1 s at 60 rpm, less the time the calls took
    assert not limiter.degraded


async def test_both_buckets_share_a_cluster_slot_and_expire_once_refilled(
    redis: Redis, prefix: str
) -> None:
    limiter = RedisLimiter(redis)
    key = limit_key("acme", "k1", "gpt", prefix=prefix)
    limit = RateLimit(requests_per_minute=600, tokens_per_minute=6000)
    assert (await limiter.acquire(key, limit, tokens=600)).allowed
    request_key, token_key = f"{key}:req", f"{key}:tok"
    assert key_slot(request_key.encode()) == key_slot(token_key.encode())
    # One request at 600/min refills in 0.1 s; 600 tokens at 6000/min in 6 s (+1 s margin)
    assert 0 < await redis.pttl(request_key) <= 1_100
    assert 6_000 < await redis.pttl(token_key) <= 7_000


async def test_a_refused_call_reserves_nothing(redis: Redis, prefix: str) -> None:
    limiter = RedisLimiter(redis, clock=lambda: 1_000.0)
    key = limit_key("acme", "k1", "gpt", prefix=prefix)
    limit = RateLimit(requests_per_minute=10, tokens_per_minute=100)
    assert (await limiter.acquire(key, limit, tokens=90)).allowed
    assert not (await limiter.acquire(key, limit, tokens=20)).allowed
    for _ in range(9):
        assert (await limiter.acquire(key, limit, tokens=1)).allowed


async def test_concurrent_checks_from_many_clients_never_overshoot(
    redis_url: str, redis: Redis, prefix: str
) -> None:
    # Given four instances, each with its own connection, sharing one limit
    clients = [Redis.from_url(redis_url) for _ in range(4)]
    limiters = [RedisLimiter(client, op_timeout_s=10) for client in clients]
    key = limit_key("acme", "k1", "gpt", prefix=prefix)
    limit = RateLimit(
        requests_per_minute=1, burst_requests=25, tokens_per_minute=10, burst_tokens=10
    )
    try:
        # When 200 checks race
        decisions = await asyncio.gather(*(limiters[i % 4].acquire(key, limit) for i in range(200)))
    finally:
        for client in clients:
            await client.aclose()
    # Then exactly the burst is admitted
    assert not any(limiter.degraded for limiter in limiters)
    assert sum(d.allowed for d in decisions) == 25


async def test_usage_is_reconciled_in_redis(redis: Redis, prefix: str) -> None:
    # Given a 1000 tokens/min budget and a model whose answers use far fewer tokens
    limiter = RedisLimiter(redis, clock=lambda: 5_000.0)
    limit = RateLimit(tokens_per_minute=1000)
    model = RateLimitedModel(
        ScriptedModel(["ok"], cycle=True),
        limiter,
        limit,
        estimate_tokens=lambda r: 600,
        prefix=prefix,
    )
    # When two calls are made, then both fit: each refunds what it did not use
    await model.complete(REQUEST)
    await model.complete(REQUEST)
    key = limit_key("acme", "k1", "scripted", prefix=prefix)
    assert not (await limiter.acquire(key, limit, tokens=1000)).allowed
    assert (await limiter.acquire(key, limit, tokens=990)).allowed


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenarios())
def test_redis_admissions_never_exceed_limit_plus_burst(redis_url: str, scenario: Any) -> None:
    async def run() -> None:
        client = Redis.from_url(redis_url)
        clock = [1_000.0]
        limiter = RedisLimiter(client, clock=lambda: clock[0])
        key = limit_key("acme", "k1", "gpt", prefix=unique_prefix())

        async def acquire(limit: RateLimit, tokens: int, max_wait_s: float) -> Decision:
            return await limiter.acquire(key, limit, tokens=tokens, max_wait_s=max_wait_s)

        async def refund(limit: RateLimit, tokens: int) -> None:
            await limiter.adjust(key, limit, tokens=tokens)

        try:
            ledger = await play(scenario, acquire, refund, clock)
        finally:
            await client.delete(f"{key}:req", f"{key}:tok")
            await client.aclose()
        assert not limiter.degraded
        check(scenario, ledger)

    asyncio.run(run())


# ---- on a private Redis that dies --------------------------------------------------------------


class PrivateRedis:
    """A `redis-server` process of our own, on a free port, that tests may kill."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"private redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def wait_for(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within_s}s")
        await asyncio.sleep(0.02)


async def test_killing_redis_mid_load_fails_no_call_and_limits_return_to_redis(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agentguild.ratelimit")
    limiter = RedisLimiter.from_url(private_redis.url, retry_interval_s=0.2)
    limit = RateLimit(requests_per_minute=10_000_000, tokens_per_minute=1_000_000_000)
    model = RateLimitedModel(ScriptedModel(["ok"], cycle=True), limiter, limit)
    key = limit_key("acme", "k1", "scripted")
    direct = Redis.from_url(private_redis.url)
    ok = failed = 0
    stop = asyncio.Event()

    async def worker() -> None:
        nonlocal ok, failed
        while not stop.is_set():
            try:
                await model.complete(REQUEST)
                ok += 1
            except Exception:
                failed += 1
            await asyncio.sleep(0.002)

    workers = [asyncio.create_task(worker()) for _ in range(16)]
    try:
        # Given a load running against Redis
        await wait_for(lambda: ok >= 100)
        assert await direct.exists(f"{key}:req")
        # When Redis is killed mid-load
        private_redis.kill()
        await wait_for(lambda: limiter.degraded)
        degraded_at = ok
        await wait_for(lambda: ok >= degraded_at + 200)
        # And started again on the same port (empty: no data, no cached scripts)
        private_redis.start()
        await wait_for(lambda: not limiter.degraded)
        await direct.aclose()
        direct = Redis.from_url(private_redis.url)

        # Then the limiter writes to Redis again, without a restart
        async def key_written() -> bool:
            return bool(await direct.exists(f"{key}:req"))

        deadline = time.monotonic() + 10
        while not await key_written():
            assert time.monotonic() < deadline, "limiter did not write to Redis again"
            await asyncio.sleep(0.02)
        served_after = ok
        await wait_for(lambda: ok >= served_after + 100)
    finally:
        stop.set()
        await asyncio.gather(*workers)
        await direct.aclose()
        await limiter.aclose()
    # And not a single call failed; the outage was logged once
    assert failed == 0
    assert limiter.outages == 1
    assert limiter.degraded_calls > 0
    warnings = [r for r in caplog.records if "redis_unavailable" in r.getMessage()]
    assert len(warnings) == 1


async def test_limits_hold_in_process_while_redis_is_unreachable() -> None:
    # Given a limiter whose Redis is not there at all
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    limiter = RedisLimiter.from_url(
        f"redis://127.0.0.1:{port}/0", fallback=InMemoryLimiter(), retry_interval_s=60
    )
    limit = RateLimit(requests_per_minute=60, burst_requests=2)
    try:
        decisions = [await limiter.acquire("{k}", limit) for _ in range(3)]
    finally:
        await limiter.aclose()
    # Then calls are still limited, by the in-process fallback
    assert [d.allowed for d in decisions] == [True, True, False]
    assert limiter.degraded
    assert limiter.outages == 1
