"""Which server and worker processes are alive: a heartbeat row per process.

Every process that executes runs or tasks registers itself in the `instances` table,
updates its `heartbeat_at` every `interval_s`, and deletes its row when it stops. Runs and
tasks name the instance that owns them (`owner`). An instance is *live* while its
heartbeat is younger than `stale_after_s`; a row on this host whose process is gone is
dead at once (a restarted server need not wait for its predecessor's heartbeat to age).

Each beat, every instance also *sweeps*: it deletes dead instances' rows and calls its
recoverers (`on_sweep`), which take over or close what dead owners left behind. Recovery
statements must select orphans as "owner not among the live instances" in the statement
itself (`live_instance_ids`), so an instance that registered a moment ago is never
mistaken for a dead one.

```python
heartbeat = InstanceHeartbeat(db, "server")
heartbeat.on_sweep(runner.recover)
await heartbeat.start()      # registers, then sweeps once
...
await heartbeat.aclose()     # deregisters
```
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Literal

from sqlalchemy import Select, delete, select, update

from .._aio import unbroken
from ..store.db import Database
from ..store.models import Instance, utcnow

__all__ = [
    "InstanceHeartbeat",
    "InstanceKind",
    "instance_metrics",
    "live_instance_ids",
    "new_instance_id",
]

logger = logging.getLogger(__name__)

InstanceKind = Literal["server", "worker"]

_REGISTERED_HERE: set[str] = set()
"""Ids of the instances this process registered (tests run several in one process)."""


def new_instance_id() -> str:
    """A process-start-unique id: `host:pid:random`."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def live_instance_ids(stale_after_s: float) -> Select[str]:
    """A subquery of the ids of instances whose heartbeat is younger than `stale_after_s`
    (use it inside the recovering statement: `Run.owner.not_in(live_instance_ids(...))`)."""
    cutoff = utcnow() - timedelta(seconds=stale_after_s)
    return select(Instance.id).where(Instance.heartbeat_at >= cutoff)


class InstanceHeartbeat:
    """This process's row in `instances`: registered, kept fresh, swept, removed."""

    def __init__(
        self,
        db: Database,
        kind: InstanceKind,
        *,
        interval_s: float = 5.0,
        stale_after_s: float = 30.0,
        instance_id: str | None = None,
    ) -> None:
        if stale_after_s <= interval_s:
            raise ValueError("stale_after_s must exceed interval_s")
        self.db = db
        self.kind: InstanceKind = kind
        self.interval_s = interval_s
        self.stale_after_s = stale_after_s
        self.id = instance_id or new_instance_id()
        """The id runs and tasks of this process are owned by."""
        self._recoverers: list[Callable[[], Awaitable[object]]] = []
        self._loop: asyncio.Task[None] | None = None

    def on_sweep(self, recover: Callable[[], Awaitable[object]]) -> None:
        """Have `recover` awaited on every sweep (at start, then every `interval_s`)."""
        self._recoverers.append(recover)

    async def start(self) -> None:
        """Register this process, sweep once (recovering what dead processes left), and
        start beating."""
        _REGISTERED_HERE.add(self.id)
        async with self.db.session() as session:
            session.add(self._row())
        await self.sweep()
        self._loop = asyncio.create_task(self._run(), name="agentguild-heartbeat")

    async def aclose(self) -> None:
        """Stop beating and remove this process's row."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        try:
            async with self.db.session() as session:
                await session.execute(delete(Instance).where(Instance.id == self.id))
        except Exception:  # the row ages out: others see this process dead a bit later
            logger.exception("instance.deregister_failed", extra={"instance": self.id})
        _REGISTERED_HERE.discard(self.id)

    async def beat(self) -> None:
        """Refresh this process's heartbeat (re-registering if another instance removed
        the row after missing beats: what this process owned may have been recovered)."""
        async with self.db.session() as session:
            found = await session.scalar(
                update(Instance)
                .where(Instance.id == self.id)
                .values(heartbeat_at=utcnow())
                .returning(Instance.id)
                .execution_options(synchronize_session=False)
            )
            if found is None:
                logger.error("instance.heartbeat_lost", extra={"instance": self.id})
                session.add(self._row())

    async def sweep(self) -> None:
        """Remove dead instances' rows, then run the recoverers."""
        removed = await self._remove_dead()
        if removed:
            logger.warning("instance.dead", extra={"instances": removed})
        for recover in self._recoverers:
            try:
                await recover()
            except Exception:
                logger.exception("instance.recovery_failed")

    async def live(self, kind: InstanceKind | None = None) -> list[Instance]:
        """The live instances (of one kind, or all)."""
        query = select(Instance).where(Instance.id.in_(live_instance_ids(self.stale_after_s)))
        if kind is not None:
            query = query.where(Instance.kind == kind)
        async with self.db.session() as session:
            rows = list((await session.scalars(query.order_by(Instance.started_at))).all())
            session.expunge_all()
        return rows

    async def counts(self) -> dict[str, int]:
        """Live instances per kind (`server`, `worker`), for metrics and health."""
        counts = dict.fromkeys(("server", "worker"), 0)
        for row in await self.live():
            counts[row.kind] = counts.get(row.kind, 0) + 1
        return counts

    async def is_live(self, instance_id: str | None) -> bool:
        """Whether `instance_id` names a live instance."""
        if instance_id is None:
            return False
        if instance_id == self.id:
            return True
        query = live_instance_ids(self.stale_after_s).where(Instance.id == instance_id)
        async with self.db.session() as session:
            return await session.scalar(query) is not None

    async def _remove_dead(self) -> list[str]:
        cutoff = utcnow() - timedelta(seconds=self.stale_after_s)
        host = socket.gethostname()
        async with self.db.session() as session:
            rows = (
                await session.execute(
                    select(Instance.id, Instance.host, Instance.pid, Instance.heartbeat_at).where(
                        Instance.id != self.id
                    )
                )
            ).all()
            dead = [
                row.id
                for row in rows
                if row.heartbeat_at < cutoff or (row.host == host and not _alive(row.id, row.pid))
            ]
            if dead:
                await session.execute(delete(Instance).where(Instance.id.in_(dead)))
        return dead

    def _row(self) -> Instance:
        now = utcnow()
        return Instance(
            id=self.id,
            kind=self.kind,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=now,
            heartbeat_at=now,
        )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                # Not cut off half-way by `aclose`: a write cancelled mid-commit can keep
                # SQLite's write lock.
                await unbroken(self.beat())
                await unbroken(self.sweep())
            except Exception:
                logger.exception("instance.heartbeat_failed", extra={"instance": self.id})


def _alive(instance_id: str, pid: int) -> bool:
    """Whether the instance's process runs (it is on this host). This process's own pid
    in a row it did not register is a predecessor's (a restarted container's pid 1)."""
    if pid == os.getpid():
        return instance_id in _REGISTERED_HERE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def instance_metrics(heartbeat: InstanceHeartbeat) -> bytes:
    """`agentguild_instances{kind}`: live server and worker processes (every host), in the
    Prometheus text format."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry(auto_describe=True)
    gauge = Gauge(
        "agentguild_instances",
        "Live server and worker processes, by their heartbeats.",
        ["kind"],
        registry=registry,
    )
    for kind, count in (await heartbeat.counts()).items():
        gauge.labels(kind).set(count)
    return bytes(generate_latest(registry))
