"""First start: the default tenant, its admin and a ready-to-use assistant agent."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._platform_settings import SecuritySettings
from .principal import Principal, Role

if TYPE_CHECKING:
    from ..store.db import Database

logger = logging.getLogger(__name__)

DEFAULT_TENANT = "default"
DEFAULT_AGENT = "assistant"
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Use the calculator for arithmetic."


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """What `bootstrap` did. Everything is None when the database was already set up."""

    created: bool
    """True on first start, when the tenant, admin and agent were created."""
    tenant_id: str | None = None
    admin_username: str | None = None
    admin_user_id: str | None = None
    agent_id: str | None = None
    generated_password: str | None = field(default=None, repr=False)
    """The admin's password when it was generated: show it once, never log it."""


async def bootstrap(
    db: Database, settings: SecuritySettings, default_model: str
) -> BootstrapResult:
    """Set up an empty database (no tenants); do nothing on later starts.

    Everything is created in one transaction, and a concurrent bootstrap by another
    instance makes this one a no-op, so it is safe to run at every start.
    """
    from ..runtime.agent_config import AssistantConfig
    from ..store.errors import ConflictError
    from ..store.repositories import SystemRepos, TenantRepos

    configured = settings.admin_password
    password = configured.get_secret_value() if configured else secrets.token_urlsafe(16)
    try:
        async with db.session() as session:
            system = SystemRepos(session)
            if await system.tenant_count() > 0:
                return BootstrapResult(created=False)
            tenant = await system.create_tenant(DEFAULT_TENANT)
            repos = TenantRepos(session, Principal(tenant_id=tenant.id, role=Role.ADMIN))
            admin = await repos.users.create(settings.admin_username, password, Role.ADMIN)
            config = AssistantConfig(
                model=default_model, tools=["calculator"], system_prompt=DEFAULT_SYSTEM_PROMPT
            )
            agent = await repos.agents.create(
                DEFAULT_AGENT, "General-purpose assistant", config.model_dump(), admin.id
            )
    except ConflictError:
        # Another instance bootstrapped at the same moment; its transaction won.
        return BootstrapResult(created=False)
    logger.info(
        "bootstrap.created",
        extra={"tenant_id": tenant.id, "admin": admin.username, "agent_id": agent.id},
    )
    return BootstrapResult(
        created=True,
        tenant_id=tenant.id,
        admin_username=admin.username,
        admin_user_id=admin.id,
        agent_id=agent.id,
        generated_password=None if configured else password,
    )
