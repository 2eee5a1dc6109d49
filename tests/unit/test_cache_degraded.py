"""Shared-store (L2) failures: never a failed request; degrade to L1, probe, come back."""

from __future__ import annotations

import itertools
import logging

import pytest

from agentguild.llm import ChatRequest, ScriptedModel
from agentguild.llm.cache import (
    CachedModel,
    CacheStoreError,
    CacheStoreUnavailableError,
    ResponseCache,
)
from agentguild.types import Message


def ask(text: str = "What is 2 + 2?") -> ChatRequest:
    return ChatRequest([Message.user(text)], temperature=0.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FlakyStore:
    """An in-memory shared store that can be taken down (unreachable) or made to fail."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.down = False
        self.failing = False
        self.operations = 0

    def _check(self) -> None:
        self.operations += 1
        if self.down:
            raise CacheStoreUnavailableError("connection refused")
        if self.failing:
            raise CacheStoreError("OOM command not allowed")

    async def get(self, key: str) -> bytes | None:
        self._check()
        return self.data.get(key)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._check()
        self.data[key] = value

    async def aclose(self) -> None:
        pass


def numbered() -> ScriptedModel:
    count = itertools.count(1)
    return ScriptedModel([lambda request: f"answer {next(count)}"], cycle=True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> FlakyStore:
    return FlakyStore()


@pytest.fixture
def model(store: FlakyStore, clock: FakeClock) -> CachedModel:
    return CachedModel(numbered(), cache=ResponseCache(l2=store, l2_retry_s=1.0, clock=clock))


async def test_l2_hit_after_l1_is_cleared(model: CachedModel, store: FlakyStore) -> None:
    await model.complete(ask())
    await model.cache.flush()
    model.cache.l1.clear()
    assert (await model.complete(ask())).message.text == "answer 1"
    assert model.cache.stats().l2_hits == 1


async def test_unreachable_l2_fails_no_request_and_warns_once(
    model: CachedModel, store: FlakyStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a shared store that is down
    store.down = True
    # When many requests arrive
    with caplog.at_level(logging.WARNING, logger="agentguild.cache"):
        answers = [(await model.complete(ask(f"q{i}"))).message.text for i in range(20)]
        await model.cache.flush()
    # Then all are answered, the cache says it is degraded, and one warning was logged
    assert answers == [f"answer {i}" for i in range(1, 21)]
    stats = model.cache.stats()
    assert (stats.degraded, stats.l2_outages) == (True, 1)
    assert stats.l2_errors >= 1
    assert [r.message for r in caplog.records].count(
        "cache.l2_unavailable: serving from L1 until it is back"
    ) == 1


async def test_degraded_cache_still_serves_from_l1(model: CachedModel, store: FlakyStore) -> None:
    store.down = True
    await model.complete(ask())
    assert (await model.complete(ask())).message.text == "answer 1"
    assert model.cache.stats().l1_hits == 1


async def test_unreachable_l2_is_not_asked_again_before_the_backoff(
    model: CachedModel, store: FlakyStore
) -> None:
    # Given a shared store found down
    store.down = True
    await model.complete(ask("first"))
    tried = store.operations
    # When more requests arrive within the backoff
    for i in range(10):
        await model.complete(ask(f"q{i}"))
    await model.cache.flush()
    # Then none of them touched the store
    assert store.operations == tried
    assert model.cache.stats().l2_skipped >= 10


async def test_l2_is_used_again_after_it_returns_without_a_restart(
    model: CachedModel, store: FlakyStore, clock: FakeClock
) -> None:
    # Given a cache degraded by an outage
    store.down = True
    await model.complete(ask("during the outage"))
    assert model.cache.stats().degraded
    # When the store is back and the backoff has passed
    store.down = False
    clock.now += 1.5
    await model.complete(ask("after the outage"))
    await model.cache.flush()
    # Then the new answer was written to the store, and the cache is no longer degraded
    assert len(store.data) == 1
    assert not model.cache.stats().degraded
    model.cache.l1.clear()
    assert (await model.complete(ask("after the outage"))).message.text == "answer 2"


async def test_failing_probe_keeps_the_cache_degraded(
    model: CachedModel, store: FlakyStore, clock: FakeClock
) -> None:
    store.down = True
    await model.complete(ask("one"))
    clock.now += 1.5
    await model.complete(ask("two"))  # the probe, still failing
    stats = model.cache.stats()
    assert (stats.degraded, stats.l2_outages) == (True, 1)


async def test_l2_error_other_than_unreachable_is_counted_but_does_not_degrade(
    model: CachedModel, store: FlakyStore
) -> None:
    store.failing = True
    assert (await model.complete(ask())).message.text == "answer 1"
    await model.cache.flush()
    stats = model.cache.stats()
    assert stats.l2_errors == 2  # the lookup and the write
    assert not stats.degraded


async def test_unreadable_l2_entry_is_a_counted_miss(model: CachedModel, store: FlakyStore) -> None:
    key = model.key_for(ask())
    assert key is not None
    store.data[key] = b"garbage"
    assert (await model.complete(ask())).message.text == "answer 1"
    assert model.cache.stats().l2_errors == 1
