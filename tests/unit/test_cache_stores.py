"""Cache stores and entries: L1 bounds and TTLs, the on-disk store, the entry format."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentguild.llm import ChatChunk, ChatResponse, ToolCallDelta
from agentguild.llm.cache import CacheEntry, CorruptEntryError, DiskStore, MemoryStore
from agentguild.types import Message, ToolCall, Usage

STREAMED = (
    ChatChunk(text="The answer ", model="m-1"),
    ChatChunk(text="is 4.", model="m-1"),
    ChatChunk(tool_calls=(ToolCallDelta(0, "call_1", "add", ""),)),
    ChatChunk(tool_calls=(ToolCallDelta(0, arguments='{"a": 2}'),)),
    ChatChunk(finish_reason="tool_calls"),
    ChatChunk(usage=Usage(12, 5), model="m-1"),
)
RESPONSE = ChatResponse(
    Message.assistant("Hi", tool_calls=[ToolCall("call_9", "add", '{"a": 1}')]),
    Usage(3, 4),
    "tool_calls",
    "m-2",
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(text: str = "x") -> CacheEntry:
    return CacheEntry.from_chunks([ChatChunk(text=text), ChatChunk(finish_reason="stop")])


# ---- entries ---------------------------------------------------------------------------


def test_streamed_entry_survives_encoding_chunk_for_chunk() -> None:
    decoded = CacheEntry.decode(CacheEntry.from_chunks(STREAMED).encode())
    assert decoded.chunks() == STREAMED
    assert decoded.streamed


def test_response_entry_survives_encoding() -> None:
    assert CacheEntry.decode(CacheEntry.from_response(RESPONSE).encode()).response() == RESPONSE


def test_streamed_entry_accumulates_into_the_response_the_stream_adds_up_to() -> None:
    response = CacheEntry.from_chunks(STREAMED).response()
    assert response.message.text == "The answer is 4."
    assert response.message.tool_calls == (ToolCall("call_1", "add", '{"a": 2}'),)
    assert (response.usage, response.finish_reason, response.model) == (
        Usage(12, 5),
        "tool_calls",
        "m-1",
    )


def test_response_entry_replays_as_chunks_adding_up_to_the_response() -> None:
    chunks = CacheEntry.from_response(RESPONSE).chunks()
    assert CacheEntry.from_chunks(chunks).response() == RESPONSE


@pytest.mark.parametrize("raw", [b"", b"not json", b'{"v": 999, "chunks": []}', b'{"v": 1}'])
def test_unreadable_bytes_are_a_corrupt_entry(raw: bytes) -> None:
    with pytest.raises(CorruptEntryError):
        CacheEntry.decode(raw)


# ---- MemoryStore -----------------------------------------------------------------------


def test_memory_store_evicts_the_least_recently_used_entry_beyond_its_count() -> None:
    store = MemoryStore(max_entries=2)
    store.set("a", entry(), size=10, ttl_s=60)
    store.set("b", entry(), size=10, ttl_s=60)
    store.get("a")  # "a" is now the most recently used
    store.set("c", entry(), size=10, ttl_s=60)
    assert (store.get("a") is not None, store.get("b"), store.get("c") is not None) == (
        True,
        None,
        True,
    )
    assert store.evictions == 1


def test_memory_store_evicts_to_stay_within_its_bytes() -> None:
    store = MemoryStore(max_bytes=100)
    for key in "abcd":
        store.set(key, entry(), size=40, ttl_s=60)
    assert len(store) == 2
    assert store.size_bytes == 80
    assert store.get("a") is None


def test_memory_store_does_not_keep_an_entry_larger_than_its_bytes() -> None:
    store = MemoryStore(max_bytes=100)
    store.set("big", entry(), size=101, ttl_s=60)
    assert (len(store), store.size_bytes) == (0, 0)


def test_memory_store_entry_expires_after_its_ttl() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.set("a", entry(), size=10, ttl_s=5)
    clock.now += 4.9
    assert store.get("a") is not None
    clock.now += 0.2
    assert store.get("a") is None
    assert store.size_bytes == 0


def test_memory_store_replacing_an_entry_keeps_the_byte_count_right() -> None:
    store = MemoryStore()
    store.set("a", entry("one"), size=10, ttl_s=60)
    store.set("a", entry("two"), size=30, ttl_s=60)
    assert (len(store), store.size_bytes) == (1, 30)


# ---- DiskStore -------------------------------------------------------------------------


@pytest.fixture
async def disk(tmp_path: Path) -> AsyncIterator[DiskStore]:
    store = DiskStore(tmp_path / "cache" / "responses.sqlite3")
    yield store
    await store.aclose()


async def test_disk_store_returns_what_was_set(disk: DiskStore) -> None:
    await disk.set("t:1", b"value", 60)
    assert await disk.get("t:1") == b"value"
    assert await disk.get("t:2") is None


async def test_disk_store_does_not_return_an_expired_entry(disk: DiskStore) -> None:
    await disk.set("t:1", b"value", -1)
    assert await disk.get("t:1") is None


async def test_disk_store_entries_outlive_the_store_object(tmp_path: Path) -> None:
    # Given an entry written by one store, which is then closed
    first = DiskStore(tmp_path / "c.sqlite3")
    await first.set("t:1", b"kept", 60)
    await first.aclose()
    # When another store opens the same file (a restart, or another process)
    second = DiskStore(tmp_path / "c.sqlite3")
    # Then it finds the entry
    assert await second.get("t:1") == b"kept"
    await second.aclose()


async def test_disk_store_purges_expired_and_excess_entries(tmp_path: Path) -> None:
    # Given a store keeping at most 2 entries, purging every 4 writes
    path = tmp_path / "c.sqlite3"
    store = DiskStore(path, max_entries=2, purge_every=4)
    await store.set("expired", b"x", -1)
    for key, ttl in (("soon", 10), ("later", 20), ("latest", 30)):
        await store.set(key, b"x", ttl)
    await store.aclose()
    # Then the expired entry and the one expiring soonest are gone
    with sqlite3.connect(path) as db:
        keys = {row[0] for row in db.execute("SELECT key FROM entries")}
    assert keys == {"later", "latest"}
