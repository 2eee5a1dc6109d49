"""Each tenant's agents, ready to run, cached in memory.

The serving hot path (`/v1/chat/completions`) looks agents up by name on every request;
the catalog answers from memory. A tenant's agent list is loaded in one query (concurrent
misses share it), kept for `ttl_s`, and dropped at once on this instance by `invalidate`
when the tenant's agents change (other instances see the change within `ttl_s`). A name
or id the snapshot does not know triggers a reload, at most once per `miss_refresh_s`, so
a just-created agent is usable at once while unknown names cannot flood the database.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from ..agents.base import Agent
from ..errors import ConfigError
from ..security import Principal
from ..store.db import Database
from ..store.views import AgentView
from .agent_factory import AgentFactory


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One agent of a tenant at its current version, with the runnable agent built."""

    id: str
    name: str
    version: int
    description: str
    created_at: float
    """Unix time the agent was created (for `/v1/models`)."""
    config: dict[str, Any]
    built: Agent | None
    """The runnable agent; None if its configuration cannot be built here (see `problem`)."""
    problem: str | None = None
    """Why the agent cannot run on this server (e.g. its model is no longer configured)."""

    @property
    def agent(self) -> Agent:
        """The runnable agent; raises `ConfigError` (with the reason) if there is none."""
        if self.built is None:
            raise ConfigError(f"agent {self.name!r} cannot run: {self.problem}")
        return self.built


@dataclass(slots=True)
class _Snapshot:
    by_id: dict[str, CatalogEntry]
    by_name: dict[str, CatalogEntry]
    loaded_at: float


class AgentCatalog:
    """The tenants' live agents, by id and by name, from a per-tenant in-memory snapshot."""

    def __init__(
        self,
        db: Database,
        factory: AgentFactory,
        *,
        ttl_s: float = 10.0,
        miss_refresh_s: float = 1.0,
    ) -> None:
        self.db = db
        self.factory = factory
        self.ttl_s = ttl_s
        self.miss_refresh_s = miss_refresh_s
        self._snapshots: dict[str, _Snapshot] = {}
        self._loading: dict[str, asyncio.Future[_Snapshot]] = {}

    async def get(self, principal: Principal, agent_id: str) -> CatalogEntry | None:
        """The caller's tenant's live agent with this id, or None."""
        snapshot = await self._snapshot(principal)
        entry = snapshot.by_id.get(agent_id)
        if entry is None and self._may_refresh(snapshot):
            entry = (await self._snapshot(principal, force=True)).by_id.get(agent_id)
        return entry

    async def by_name(self, principal: Principal, name: str) -> CatalogEntry | None:
        """The caller's tenant's live agent with this name, or None."""
        snapshot = await self._snapshot(principal)
        entry = snapshot.by_name.get(name)
        if entry is None and self._may_refresh(snapshot):
            entry = (await self._snapshot(principal, force=True)).by_name.get(name)
        return entry

    async def resolve(self, principal: Principal, id_or_name: str) -> CatalogEntry | None:
        """The caller's tenant's live agent with this id, or else this name; or None."""
        return await self.get(principal, id_or_name) or await self.by_name(principal, id_or_name)

    async def at_version(
        self, principal: Principal, agent_id: str, version: int | None
    ) -> CatalogEntry | None:
        """The live agent as configured at `version` (a run resumed after its agent changed
        goes on with the configuration it started with); None if the agent is gone.
        Other versions than the current one are built anew on each call (not cached)."""
        entry = await self.get(principal, agent_id)
        if entry is None or version is None or entry.version == version:
            return entry
        async with self.db.repos(principal) as repos:
            old = await repos.agents.get_version(agent_id, version)
        if old is None:
            return entry
        view = AgentView(
            id=entry.id,
            tenant_id=principal.tenant_id,
            name=entry.name,
            description=entry.description,
            version=old.version,
            config=old.config,
            created_at=old.created_at,
            updated_at=old.created_at,
        )
        return self._entry(view)

    async def list(self, principal: Principal) -> list[CatalogEntry]:
        """The caller's tenant's live agents, oldest first."""
        snapshot = await self._snapshot(principal)
        return sorted(snapshot.by_id.values(), key=lambda entry: (entry.created_at, entry.id))

    def invalidate(self, tenant_id: str) -> None:
        """Forget a tenant's snapshot (call after creating, changing or deleting an agent)."""
        self._snapshots.pop(tenant_id, None)

    def _may_refresh(self, snapshot: _Snapshot) -> bool:
        return time.monotonic() - snapshot.loaded_at >= self.miss_refresh_s

    async def _snapshot(self, principal: Principal, *, force: bool = False) -> _Snapshot:
        tenant_id = principal.tenant_id
        snapshot = self._snapshots.get(tenant_id)
        if (
            not force
            and snapshot is not None
            and time.monotonic() - snapshot.loaded_at < self.ttl_s
        ):
            return snapshot
        pending = self._loading.get(tenant_id)
        if pending is None:
            pending = asyncio.ensure_future(self._load(principal))
            self._loading[tenant_id] = pending
            pending.add_done_callback(lambda _: self._loading.pop(tenant_id, None))
        # Shielded: one caller giving up must not cancel the load the others wait for.
        return await asyncio.shield(pending)

    async def _load(self, principal: Principal) -> _Snapshot:
        views: list[AgentView] = []
        async with self.db.repos(principal) as repos:
            cursor: str | None = None
            while True:
                page = await repos.agents.list(limit=500, cursor=cursor)
                views.extend(page.items)
                cursor = page.next_cursor
                if cursor is None:
                    break
        entries = [self._entry(view) for view in views]
        snapshot = _Snapshot(
            by_id={entry.id: entry for entry in entries},
            by_name={entry.name: entry for entry in entries},
            loaded_at=time.monotonic(),
        )
        self._snapshots[principal.tenant_id] = snapshot
        return snapshot

    def _entry(self, view: AgentView) -> CatalogEntry:
        built: Agent | None = None
        problem: str | None = None
        try:
            built = self.factory.build(view.id, view.version, view.name, view.config)
        except ConfigError as exc:
            problem = str(exc)
        created = view.created_at
        if created.tzinfo is None:  # SQLite returns naive UTC datetimes
            created = created.replace(tzinfo=UTC)
        return CatalogEntry(
            id=view.id,
            name=view.name,
            version=view.version,
            description=view.description,
            created_at=created.timestamp(),
            config=view.config,
            built=built,
            problem=problem,
        )
