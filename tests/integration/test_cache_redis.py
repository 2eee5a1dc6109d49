"""The response cache against a real Redis (L2) and the fake OpenAI-compatible server.

Tests use Redis database 15 with a unique key prefix each; the outage test starts its own
private redis-server on a free port, kills it mid-load and restarts it.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from agentguild.llm import ChatChunk, ChatModel, ChatRequest, ChatResponse, OpenAICompatModel
from agentguild.llm.cache import CachedModel, RedisStore, ResponseCache, tenant_prefix
from agentguild.testing import FakeLLMServer, FakeToolCall, Reply
from agentguild.types import Message, Usage


def ask(text: str = "What is 2 + 2?", **fields: object) -> ChatRequest:
    return ChatRequest([Message.user(text)], temperature=0.0, **fields)  # type: ignore[arg-type]


async def collect(model: ChatModel, request: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in model.stream(request)]


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    value = f"agentguild-test:{uuid.uuid4().hex}:"
    yield value
    keys = [key async for key in redis_client.scan_iter(match=value + "*")]
    if keys:
        await redis_client.delete(*keys)


def patient_store(url: str, prefix: str) -> RedisStore:
    """A Redis store whose timeouts a loaded CI machine cannot hit: the default 0.25 s is
    made for production, and a timeout counts as an outage, which these tests count.
    A killed or absent Redis still fails at once (connection refused)."""
    return RedisStore(url, prefix=prefix, connect_timeout_s=5.0, timeout_s=5.0)


@pytest.fixture
async def cache(redis_url: str, prefix: str) -> AsyncIterator[ResponseCache]:
    cache = ResponseCache(l2=patient_store(redis_url, prefix))
    yield cache
    await cache.aclose()


@pytest.fixture
async def fake_model(fake_llm: FakeLLMServer) -> AsyncIterator[OpenAICompatModel]:
    model = OpenAICompatModel("fake-model", base_url=fake_llm.base_url, api_key="test")
    yield model
    await model.aclose()


# ---- L2 hits through Redis ---------------------------------------------------------------


async def test_answer_is_served_from_redis_after_l1_is_cleared(
    fake_llm: FakeLLMServer,
    fake_model: OpenAICompatModel,
    cache: ResponseCache,
    redis_client: aioredis.Redis,
    prefix: str,
) -> None:
    # Given an answer from the fake server, cached in L1 and in Redis with the cache's TTL
    model = CachedModel(fake_model, cache=cache, ttl_s=600)
    first = await model.complete(ask())
    await cache.flush()
    key = model.key_for(ask())
    assert key is not None
    assert 0 < await redis_client.pttl(prefix + key) <= 600_000
    # When L1 is cleared (another instance, or a restart) and the request is repeated
    cache.l1.clear()
    second = await model.complete(ask())
    # Then Redis answered: the server saw one request
    assert second == first
    assert fake_llm.request_count == 1
    assert cache.stats().l2_hits == 1


@pytest.mark.fake_llm(Reply("Let me add these.", tool_calls=[FakeToolCall("add", {"a": 2})]))
async def test_streamed_answer_replays_from_redis_chunk_for_chunk(
    fake_llm: FakeLLMServer, fake_model: OpenAICompatModel, redis_url: str, prefix: str
) -> None:
    # Given a streamed answer cached by one instance
    writer = ResponseCache(l2=patient_store(redis_url, prefix))
    original = await collect(CachedModel(fake_model, cache=writer), ask())
    await writer.aclose()
    # When a second instance (its own, empty L1) streams the same request
    reader = ResponseCache(l2=patient_store(redis_url, prefix))
    replayed = await collect(CachedModel(fake_model, cache=reader), ask())
    await reader.aclose()
    # Then it replays the original chunks, text and tool-call deltas and usage included
    assert replayed == original
    assert len([c for c in replayed if c.text]) > 1
    assert any(c.tool_calls for c in replayed)
    assert any(c.usage for c in replayed)
    assert fake_llm.request_count == 1


async def test_tenants_never_share_an_entry_in_redis(
    fake_llm: FakeLLMServer,
    fake_model: OpenAICompatModel,
    cache: ResponseCache,
    redis_client: aioredis.Redis,
    prefix: str,
) -> None:
    # Given tenant acme's answer cached in Redis
    model = CachedModel(fake_model, cache=cache)
    await model.complete(ask(tenant_id="acme"))
    await cache.flush()
    cache.l1.clear()
    # When tenant globex makes the identical request
    await model.complete(ask(tenant_id="globex"))
    await cache.flush()
    # Then it went upstream, and each tenant has its own key under its own prefix
    assert fake_llm.request_count == 2
    for tenant in ("acme", "globex"):
        keys = [k async for k in redis_client.scan_iter(match=f"{prefix}{tenant_prefix(tenant)}*")]
        assert len(keys) == 1


async def test_1000_concurrent_identical_requests_reach_the_server_once(
    fake_llm: FakeLLMServer, fake_model: OpenAICompatModel, cache: ResponseCache
) -> None:
    fake_llm.latency = 0.05  # the server is slow to answer; not used to synchronise
    model = CachedModel(fake_model, cache=cache)
    responses = await asyncio.gather(*(model.complete(ask()) for _ in range(1000)))
    assert fake_llm.request_count == 1
    assert {r.message.text for r in responses} == {"What is 2 + 2?"}


async def test_unreachable_redis_degrades_without_failing_requests(
    fake_llm: FakeLLMServer, fake_model: OpenAICompatModel
) -> None:
    # Given a cache pointed at a port where no Redis listens
    cache = ResponseCache(l2=RedisStore(f"redis://127.0.0.1:{free_port()}/0"))
    model = CachedModel(fake_model, cache=cache)
    # When requests arrive
    answers = [(await model.complete(ask(f"q{i}"))).message.text for i in range(5)]
    repeat = await model.complete(ask("q0"))
    await cache.aclose()
    # Then they are answered upstream and from L1, and the cache reports degraded mode
    assert answers == [f"q{i}" for i in range(5)]
    assert repeat.message.text == "q0"
    stats = cache.stats()
    assert (stats.degraded, stats.l2_outages, stats.l1_hits) == (True, 1, 1)


# ---- a Redis outage during load ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server of this test's own, on its own port, with no persistence."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.process = subprocess.Popen(
            [
                binary,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--logfile", ""),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:  # ready when it says so: no polling
            if "Ready to accept connections" in line:
                return
        raise RuntimeError(f"redis-server on port {self.port} exited before it was ready")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis(free_port())
    server.start()
    yield server
    server.kill()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class GatedEcho:
    """Echoes the question once `gate` opens; `arrived` counts calls reaching it."""

    name = "gated-echo"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.arrived = 0
        self._arrivals = asyncio.Condition()

    async def wait_for_arrivals(self, count: int) -> None:
        async with self._arrivals:
            await self._arrivals.wait_for(lambda: self.arrived >= count)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        async with self._arrivals:
            self.arrived += 1
            self._arrivals.notify_all()
        await self.gate.wait()
        return ChatResponse(Message.assistant(request.messages[-1].text), Usage(4, 4))

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise NotImplementedError
        yield ChatChunk()  # pragma: no cover


async def test_killing_redis_mid_load_fails_no_request_and_the_cache_recovers(
    private_redis: PrivateRedis,
) -> None:
    # Given a Redis-backed cache, and a first wave of 100 requests waiting upstream
    clock = FakeClock()
    prefix = "agentguild-test:outage:"
    cache = ResponseCache(l2=patient_store(private_redis.url, prefix), clock=clock)
    inner = GatedEcho()
    model = CachedModel(inner, cache=cache)
    questions = [f"question {i}" for i in range(200)]
    wave1 = [asyncio.create_task(model.complete(ask(q))) for q in questions[:100]]
    await inner.wait_for_arrivals(100)
    assert cache.stats().l2_outages == 0
    # When Redis is killed, a second wave arrives (its first request finds Redis down, the
    # rest leave it alone), and upstream answers everything
    private_redis.kill()
    wave2 = [asyncio.create_task(model.complete(ask(questions[100])))]
    await inner.wait_for_arrivals(101)
    wave2 += [asyncio.create_task(model.complete(ask(q))) for q in questions[101:]]
    await inner.wait_for_arrivals(200)
    inner.gate.set()
    results = await asyncio.gather(*wave1, *wave2, return_exceptions=True)
    await cache.flush()
    # Then no request failed, and the cache counted the outage and went degraded
    assert [r.message.text if isinstance(r, ChatResponse) else r for r in results] == questions
    stats = cache.stats()
    assert (stats.degraded, stats.l2_outages) == (True, 1)
    assert stats.l2_errors >= 1

    # When Redis comes back on the same port and the probe backoff has passed
    private_redis.start()
    clock.now += cache.l2_retry_s + 0.1
    after = ask("after the outage")
    await model.complete(after)
    await cache.flush()
    # Then the new answer was written to Redis (read it directly), without a restart
    key = model.key_for(after)
    assert key is not None
    direct = aioredis.Redis.from_url(private_redis.url)
    try:
        assert await direct.get(prefix + key) is not None
    finally:
        await direct.aclose()
    assert not cache.stats().degraded
    # And reads come from Redis again too
    cache.l1.clear()
    arrived = inner.arrived
    assert (await model.complete(after)).message.text == "after the outage"
    assert inner.arrived == arrived
    assert cache.stats().l2_hits == 1
    # And the connections pooled before the outage (left stale) do not fake a second one
    more = [asyncio.create_task(model.complete(ask(f"later {i}"))) for i in range(100)]
    await asyncio.gather(*more)
    await cache.flush()
    stats = cache.stats()
    assert (stats.degraded, stats.l2_outages) == (False, 1)
    await cache.aclose()


async def test_frozen_redis_times_out_into_degraded_mode_instead_of_hanging_requests(
    private_redis: PrivateRedis,
) -> None:
    # Given a Redis-backed cache whose Redis stops answering (process frozen)
    cache = ResponseCache(l2=RedisStore(private_redis.url, prefix="agentguild-test:frozen:"))
    model = CachedModel(GatedEcho(), cache=cache)
    assert isinstance(model.inner, GatedEcho)
    model.inner.gate.set()
    await model.complete(ask("warm up the connection pool"))
    await cache.flush()
    assert private_redis.process is not None
    private_redis.process.send_signal(signal.SIGSTOP)
    try:
        # When a request arrives
        answer = await model.complete(ask("while Redis is frozen"))
        await cache.flush()
    finally:
        private_redis.process.send_signal(signal.SIGCONT)
    # Then it is answered (the Redis call timed out), and the cache is degraded
    assert answer.message.text == "while Redis is frozen"
    assert cache.stats().degraded
    await cache.aclose()
