"""Who is calling: the authenticated principal, its role and what that role permits."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """Roles, from most to least powerful."""

    ADMIN = "admin"
    DEVELOPER = "developer"
    USER = "user"
    VIEWER = "viewer"


class Permission(StrEnum):
    """Things a principal may do; roles grant sets of these."""

    AGENTS_READ = "agents:read"
    AGENTS_WRITE = "agents:write"
    AGENTS_DELETE = "agents:delete"
    AGENTS_EXECUTE = "agents:execute"
    MODELS_USE = "models:use"
    MODELS_CONFIGURE = "models:configure"
    TOOLS_USE = "tools:use"
    TOOLS_REGISTER = "tools:register"
    METRICS_READ = "metrics:read"
    CONFIG_READ = "config:read"
    USERS_MANAGE = "users:manage"
    DATA_READ = "data:read"
    DATA_WRITE = "data:write"
    DATA_DELETE = "data:delete"
    DATA_EXPORT = "data:export"
    JOBS_MANAGE = "jobs:manage"
    """Read the tenant's background jobs and dead letters, re-drive dead letters."""


_VIEWER = frozenset({Permission.AGENTS_READ, Permission.DATA_READ})
_USER = _VIEWER | {
    Permission.AGENTS_EXECUTE,
    Permission.MODELS_USE,
    Permission.TOOLS_USE,
    Permission.DATA_WRITE,
}
_DEVELOPER = _USER | {
    Permission.AGENTS_WRITE,
    Permission.AGENTS_DELETE,
    Permission.TOOLS_REGISTER,
    Permission.METRICS_READ,
    Permission.DATA_DELETE,
    Permission.DATA_EXPORT,
    Permission.JOBS_MANAGE,
}
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: _VIEWER,
    Role.USER: frozenset(_USER),
    Role.DEVELOPER: frozenset(_DEVELOPER),
    Role.ADMIN: frozenset(Permission),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller, scoped to exactly one tenant."""

    tenant_id: str
    role: Role
    user_id: str | None = None
    api_key_id: str | None = None
    username: str | None = None

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self.role]

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    @property
    def caller_id(self) -> str:
        """The key rate limits and metering use: the API key if any, else the user."""
        return self.api_key_id or self.user_id or "anonymous"
