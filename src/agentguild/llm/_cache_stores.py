"""Response-cache stores: the in-process L1 (`MemoryStore`) and the shared-store protocol
with its embedded implementation (`DiskStore`, SQLite in a worker thread)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from ..errors import AgentguildError
from ._cache_entry import CacheEntry

_T = TypeVar("_T")


class CacheStoreError(AgentguildError):
    """A shared cache store failed an operation (the request goes on without it)."""


class CacheStoreUnavailableError(CacheStoreError):
    """A shared cache store cannot be reached (connection refused, timeout, disk gone);
    the cache stops using it for a short backoff, then probes it again."""


@runtime_checkable
class CacheStore(Protocol):
    """A shared (L2) store of encoded cache entries: Redis, a disk file, anything with TTLs.

    Implementations raise `CacheStoreUnavailableError` when the store cannot be reached
    and `CacheStoreError` for other failures; they never block the event loop.
    """

    async def get(self, key: str) -> bytes | None:
        """The value stored under `key`, or None if absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store `value` under `key` for `ttl_s` seconds."""
        ...

    async def aclose(self) -> None:
        """Release connections, files and threads."""
        ...


class MemoryStore:
    """The in-process L1: an LRU of decoded entries bounded by count and approximate bytes,
    each entry with its own TTL. Not shared between processes."""

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("MemoryStore needs max_entries >= 1 and max_bytes >= 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[CacheEntry, float, int]] = OrderedDict()
        self._bytes = 0
        self.evictions = 0
        """Entries dropped to respect the bounds (expired entries are not counted)."""

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Approximate bytes held (the encoded size of every entry)."""
        return self._bytes

    def get(self, key: str) -> CacheEntry | None:
        """The live entry under `key` (now most recently used), or None."""
        item = self._entries.get(key)
        if item is None:
            return None
        entry, expires_at, _ = item
        if expires_at <= self._clock():
            self.delete(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def set(self, key: str, entry: CacheEntry, *, size: int, ttl_s: float) -> None:
        """Store `entry` (`size`: its approximate bytes) for `ttl_s` seconds, evicting the
        least recently used entries beyond the bounds. An entry larger than `max_bytes`
        is not stored."""
        self.delete(key)
        if size > self.max_bytes or ttl_s <= 0:
            return
        self._entries[key] = (entry, self._clock() + ttl_s, size)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, _, evicted_size) = self._entries.popitem(last=False)
            self._bytes -= evicted_size
            self.evictions += 1

    def delete(self, key: str) -> None:
        """Forget `key` (no error if absent)."""
        item = self._entries.pop(key, None)
        if item is not None:
            self._bytes -= item[2]

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
        self._bytes = 0


class DiskStore:
    """The embedded shared store: one SQLite file, usable by every process on the machine.

    SQLite runs on one dedicated worker thread (it serialises access to the connection and
    keeps the event loop free); the file is in WAL mode so other processes read while one
    writes. Expired entries are skipped on read and purged, together with the entries
    beyond `max_entries` (soonest to expire first), every `purge_every` writes.
    """

    def __init__(
        self, path: str | Path, *, max_entries: int = 100_000, purge_every: int = 256
    ) -> None:
        self.path = Path(path)
        self.max_entries = max_entries
        self._purge_every = purge_every
        self._writes = 0
        self._connection: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentguild-cache")

    def __repr__(self) -> str:
        return f"DiskStore({str(self.path)!r})"

    async def get(self, key: str) -> bytes | None:
        return await self._run(self._get, key)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._run(self._set, key, value, ttl_s)

    async def delete(self, key: str) -> None:
        """Forget `key` (no error if absent)."""
        await self._run(self._delete, key)

    async def aclose(self) -> None:
        await self._run(self._close)
        self._executor.shutdown(wait=False)

    async def _run(self, function: Callable[..., _T], *args: object) -> _T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, function, *args)
        except sqlite3.OperationalError as exc:  # cannot open/lock/write the file
            raise CacheStoreUnavailableError(f"disk cache {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise CacheStoreError(f"disk cache {self.path}: {exc}") from exc

    # ---- on the worker thread ---------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path, timeout=1.0, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS entries "
                "(key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL NOT NULL)"
            )
            connection.execute("CREATE INDEX IF NOT EXISTS entries_expiry ON entries(expires_at)")
            self._connection = connection
        return self._connection

    def _get(self, key: str) -> bytes | None:
        row = (
            self._db()
            .execute(
                "SELECT value FROM entries WHERE key = ? AND expires_at > ?", (key, time.time())
            )
            .fetchone()
        )
        return None if row is None else bytes(row[0])

    def _set(self, key: str, value: bytes, ttl_s: float) -> None:
        db = self._db()
        db.execute(
            "INSERT OR REPLACE INTO entries (key, value, expires_at) VALUES (?, ?, ?)",
            (key, value, time.time() + ttl_s),
        )
        self._writes += 1
        if self._writes % self._purge_every == 0:
            self._purge(db)

    def _purge(self, db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM entries WHERE expires_at <= ?", (time.time(),))
        (count,) = db.execute("SELECT COUNT(*) FROM entries").fetchone()
        if count > self.max_entries:
            db.execute(
                "DELETE FROM entries WHERE key IN "
                "(SELECT key FROM entries ORDER BY expires_at LIMIT ?)",
                (count - self.max_entries,),
            )

    def _delete(self, key: str) -> None:
        self._db().execute("DELETE FROM entries WHERE key = ?", (key,))

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
