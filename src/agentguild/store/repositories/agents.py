"""Agents and their versioned configurations."""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..errors import ConflictError
from ..ids import new_id
from ..models import AgentRecord, AgentVersion, utcnow
from ..views import AgentVersionView, AgentView, Page
from ._base import TenantRepo, clamp_limit, newest_first, page_of


class AgentRepo(TenantRepo):
    """The tenant's agents. Deleting is soft: the rows stay for past runs, the name frees up.

    Configurations are stored as given (JSON objects); the caller validates them
    (`agentguild.runtime.agent_config.AgentConfig`) before writing.
    """

    async def create(
        self, name: str, description: str, config: dict[str, Any], created_by: str | None
    ) -> AgentView:
        """A new agent at version 1; ConflictError if a live agent has this name."""
        now = utcnow()
        record = AgentRecord(
            id=new_id("agt"),
            tenant_id=self._tenant_id,
            name=name,
            description=description,
            current_version=1,
            created_at=now,
            updated_at=now,
        )
        version = AgentVersion(
            id=new_id("agv"),
            tenant_id=self._tenant_id,
            agent_id=record.id,
            version=1,
            config=config,
            created_at=now,
            created_by=created_by,
        )
        self._session.add(record)
        try:
            await self._session.flush()
        except IntegrityError as exc:
            raise ConflictError(f"an agent named {name!r} already exists") from exc
        self._session.add(version)
        await self._session.flush()
        return _view(record, version)

    async def get(self, agent_id: str) -> AgentView | None:
        """The live agent with its current configuration, or None."""
        query = self._live().where(AgentRecord.id == agent_id)
        return await self._one_view(query)

    async def get_by_name(self, name: str) -> AgentView | None:
        """The live agent named `name`, or None."""
        query = self._live().where(AgentRecord.name == name)
        return await self._one_view(query)

    async def list(self, limit: int = 50, cursor: str | None = None) -> Page[AgentView]:
        """Live agents, newest first."""
        query = select(AgentRecord).where(
            AgentRecord.tenant_id == self._tenant_id, AgentRecord.deleted_at.is_(None)
        )
        query = newest_first(query, AgentRecord.created_at, AgentRecord.id, cursor, limit)
        page = page_of((await self._session.scalars(query)).all(), clamp_limit(limit))
        if not page.items:
            return Page([])
        versions = await self._session.scalars(
            select(AgentVersion).where(
                AgentVersion.tenant_id == self._tenant_id,
                AgentVersion.agent_id.in_([a.id for a in page.items]),
            )
        )
        by_key = {(v.agent_id, v.version): v for v in versions}
        items = [_view(a, by_key[(a.id, a.current_version)]) for a in page.items]
        return Page(items, page.next_cursor)

    async def update(
        self,
        agent_id: str,
        *,
        description: str | None = None,
        config: dict[str, Any] | None = None,
        created_by: str | None = None,
    ) -> AgentView | None:
        """Change the description and/or configuration; a changed config is a new version."""
        current = await self.get(agent_id)
        if current is None:
            return None
        values: dict[str, Any] = {"updated_at": utcnow()}
        if description is not None:
            values["description"] = description
        new_config = config is not None and config != current.config
        if new_config:
            values["current_version"] = AgentRecord.current_version + 1
        if len(values) == 1:
            return current
        version = await self._session.scalar(
            update(AgentRecord)
            .where(AgentRecord.tenant_id == self._tenant_id, AgentRecord.id == agent_id)
            .values(**values)
            .returning(AgentRecord.current_version)
            .execution_options(synchronize_session=False)
        )
        if new_config and version is not None:
            self._session.add(
                AgentVersion(
                    id=new_id("agv"),
                    tenant_id=self._tenant_id,
                    agent_id=agent_id,
                    version=version,
                    config=config,
                    created_at=values["updated_at"],
                    created_by=created_by,
                )
            )
            await self._session.flush()
        return await self.get(agent_id)

    async def versions(self, agent_id: str) -> builtins.list[AgentVersionView]:
        """Every configuration of the live agent, oldest first ([] if there is no such agent)."""
        rows = await self._session.scalars(
            self._versions().where(AgentVersion.agent_id == agent_id).order_by(AgentVersion.version)
        )
        return [_version_view(v) for v in rows]

    async def get_version(self, agent_id: str, version: int) -> AgentVersionView | None:
        """One configuration of the live agent, or None."""
        row = await self._session.scalar(
            self._versions().where(
                AgentVersion.agent_id == agent_id, AgentVersion.version == version
            )
        )
        return None if row is None else _version_view(row)

    async def delete(self, agent_id: str) -> bool:
        """Soft-delete the agent; False if there was no live agent with this id."""
        now = utcnow()
        deleted = await self._session.scalar(
            update(AgentRecord)
            .where(
                AgentRecord.tenant_id == self._tenant_id,
                AgentRecord.id == agent_id,
                AgentRecord.deleted_at.is_(None),
            )
            .values(deleted_at=now, updated_at=now)
            .returning(AgentRecord.id)
            .execution_options(synchronize_session=False)
        )
        return deleted is not None

    def _live(self) -> Any:
        return (
            select(AgentRecord, AgentVersion)
            .join(
                AgentVersion,
                (AgentVersion.agent_id == AgentRecord.id)
                & (AgentVersion.version == AgentRecord.current_version),
            )
            .where(AgentRecord.tenant_id == self._tenant_id, AgentRecord.deleted_at.is_(None))
            .execution_options(populate_existing=True)
        )

    def _versions(self) -> Any:
        return (
            select(AgentVersion)
            .join(AgentRecord, AgentRecord.id == AgentVersion.agent_id)
            .where(
                AgentVersion.tenant_id == self._tenant_id,
                AgentRecord.tenant_id == self._tenant_id,
                AgentRecord.deleted_at.is_(None),
            )
        )

    async def _one_view(self, query: Any) -> AgentView | None:
        row = (await self._session.execute(query)).first()
        return None if row is None else _view(row[0], row[1])


def _view(agent: AgentRecord, version: AgentVersion) -> AgentView:
    return AgentView(
        id=agent.id,
        tenant_id=agent.tenant_id,
        name=agent.name,
        description=agent.description,
        version=version.version,
        config=dict(version.config),
        created_at=agent.created_at,
        updated_at=agent.updated_at,
    )


def _version_view(version: AgentVersion) -> AgentVersionView:
    return AgentVersionView(
        agent_id=version.agent_id,
        version=version.version,
        config=dict(version.config),
        created_at=version.created_at,
        created_by=version.created_by,
    )
