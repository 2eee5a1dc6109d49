"""`/api/agents`: the tenant's agents and their versioned configurations.

A configuration names a configured model and registered tools only (422 otherwise);
changing it makes a new version, and past versions stay readable. Names are unique per
tenant (409). Reading needs `agents:read`, creating and changing `agents:write`, deleting
`agents:delete`. An agent is addressed by its id or its name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from ...errors import ConfigError
from ...runtime.agent_config import AgentConfig, AgentName, AssistantConfig
from ...runtime.services import Services
from ...security import Permission, Principal
from ...store.repositories import TenantRepos
from ...store.views import AgentVersionView, AgentView
from ..deps import ServicesDep, require
from ..errors import ApiError
from ._params import Cursor, IdPath, Limit, Page, Text2000

router = APIRouter(prefix="/api/agents", tags=["agents"])

_Read = Annotated[Principal, Depends(require(Permission.AGENTS_READ))]
_Write = Annotated[Principal, Depends(require(Permission.AGENTS_WRITE))]
_Delete = Annotated[Principal, Depends(require(Permission.AGENTS_DELETE))]
_Services = ServicesDep
VersionPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="A version number.")]


class AgentCreate(BaseModel):
    """A new agent."""

    model_config = ConfigDict(extra="forbid")

    name: AgentName
    """Unique within the tenant: letters, digits, `_ . -`, starting alphanumeric."""
    description: Text2000 = ""
    config: AgentConfig = Field(default_factory=AssistantConfig)


class AgentUpdate(BaseModel):
    """Changes to an agent; a changed `config` becomes a new version."""

    model_config = ConfigDict(extra="forbid")

    description: Text2000 | None = None
    config: AgentConfig | None = None


class AgentOut(BaseModel):
    """An agent with its current configuration."""

    id: str
    name: str
    description: str
    version: int
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: AgentView) -> AgentOut:
        return cls(
            id=view.id,
            name=view.name,
            description=view.description,
            version=view.version,
            config=view.config,
            created_at=view.created_at,
            updated_at=view.updated_at,
        )


class AgentVersionOut(BaseModel):
    """One stored configuration of an agent."""

    version: int
    config: dict[str, Any]
    created_at: datetime
    created_by: str | None

    @classmethod
    def of(cls, view: AgentVersionView) -> AgentVersionOut:
        return cls(
            version=view.version,
            config=view.config,
            created_at=view.created_at,
            created_by=view.created_by,
        )


def _checked(services: Services, config: AgentConfig) -> dict[str, Any]:
    """The configuration as stored, once its model and tools are known to exist (else 422)."""
    try:
        parsed = services.factory.check(config)
    except ConfigError as exc:
        raise ApiError(422, "invalid_agent_config", str(exc)) from exc
    return parsed.model_dump(mode="json")


async def _find(repos: TenantRepos, agent: str) -> AgentView:
    found = await repos.agents.get(agent) or await repos.agents.get_by_name(agent)
    if found is None:
        raise ApiError(404, "not_found", f"agent {agent!r} not found")
    return found


@router.get("", summary="List agents")
async def list_agents(
    principal: _Read, services: _Services, limit: Limit = 50, cursor: Cursor = None
) -> Page[AgentOut]:
    """The tenant's agents, newest first."""
    async with services.db.repos(principal) as repos:
        page = await repos.agents.list(limit=limit, cursor=cursor)
    return Page(items=[AgentOut.of(a) for a in page.items], next_cursor=page.next_cursor)


@router.post("", status_code=201, summary="Create an agent")
async def create_agent(body: AgentCreate, principal: _Write, services: _Services) -> AgentOut:
    """A new agent at version 1 (409 if the name is taken, 422 for unknown models/tools)."""
    config = _checked(services, body.config)
    async with services.db.repos(principal) as repos:
        view = await repos.agents.create(body.name, body.description, config, principal.user_id)
    services.catalog.invalidate(principal.tenant_id)
    return AgentOut.of(view)


@router.get("/{agent}", summary="Get an agent")
async def get_agent(agent: IdPath, principal: _Read, services: _Services) -> AgentOut:
    """One agent, by id or name, with its current configuration."""
    async with services.db.repos(principal) as repos:
        return AgentOut.of(await _find(repos, agent))


@router.patch("/{agent}", summary="Update an agent")
async def update_agent(
    agent: IdPath, body: AgentUpdate, principal: _Write, services: _Services
) -> AgentOut:
    """Change the description and/or the configuration (a new version)."""
    config = None if body.config is None else _checked(services, body.config)
    async with services.db.repos(principal) as repos:
        current = await _find(repos, agent)
        view = await repos.agents.update(
            current.id, description=body.description, config=config, created_by=principal.user_id
        )
    services.catalog.invalidate(principal.tenant_id)
    if view is None:
        raise ApiError(404, "not_found", f"agent {agent!r} not found")
    return AgentOut.of(view)


@router.delete("/{agent}", status_code=204, summary="Delete an agent")
async def delete_agent(agent: IdPath, principal: _Delete, services: _Services) -> Response:
    """Delete the agent (its past runs keep their record; the name can be reused)."""
    async with services.db.repos(principal) as repos:
        current = await _find(repos, agent)
        await repos.agents.delete(current.id)
    services.catalog.invalidate(principal.tenant_id)
    return Response(status_code=204)


@router.get("/{agent}/versions", summary="List an agent's versions")
async def list_versions(
    agent: IdPath, principal: _Read, services: _Services
) -> list[AgentVersionOut]:
    """Every configuration the agent has had, oldest first."""
    async with services.db.repos(principal) as repos:
        current = await _find(repos, agent)
        versions = await repos.agents.versions(current.id)
    return [AgentVersionOut.of(v) for v in versions]


@router.get("/{agent}/versions/{version}", summary="Get one version of an agent")
async def get_version(
    agent: IdPath, version: VersionPath, principal: _Read, services: _Services
) -> AgentVersionOut:
    """One past or current configuration of the agent."""
    async with services.db.repos(principal) as repos:
        current = await _find(repos, agent)
        found = await repos.agents.get_version(current.id, version)
    if found is None:
        raise ApiError(404, "not_found", f"agent {agent!r} has no version {version}")
    return AgentVersionOut.of(found)
