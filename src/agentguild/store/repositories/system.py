"""Tenant-agnostic operations: bootstrap, login and API-key lookup. Nothing else uses them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import ConflictError
from ..ids import new_id
from ..models import ApiKey, Tenant, User, utcnow
from ._base import Detaching
from .runs import mark_interrupted


class SystemRepos(Detaching):
    """Operations that must work before a tenant is known. Keep this surface small."""

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session)
        self.session = session

    async def create_tenant(self, name: str, settings: dict[str, Any] | None = None) -> Tenant:
        """A new tenant; ConflictError if the name is taken."""
        tenant = Tenant(id=new_id("tnt"), name=name, created_at=utcnow(), settings=settings or {})
        self.session.add(tenant)
        try:
            await self.session.flush()
        except IntegrityError as exc:
            raise ConflictError(f"a tenant named {name!r} already exists") from exc
        return self._detach(tenant)

    async def ensure_tenant(self, name: str) -> Tenant:
        """The tenant named `name`, created if missing."""
        return await self.tenant_by_name(name) or await self.create_tenant(name)

    async def tenant_by_name(self, name: str) -> Tenant | None:
        """The tenant named `name`, or None."""
        return await self._one(select(Tenant).where(Tenant.name == name))

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        """The tenant with this id, or None."""
        return await self._one(select(Tenant).where(Tenant.id == tenant_id))

    async def tenant_count(self) -> int:
        """How many tenants exist (0 means first start)."""
        return int(await self.session.scalar(select(func.count()).select_from(Tenant)) or 0)

    async def user_by_username(self, username: str) -> User | None:
        """The user with this login name in any tenant (active or not), or None."""
        return await self._one(select(User).where(User.username == username))

    async def get_user(self, user_id: str) -> User | None:
        """The user with this id in any tenant, or None (e.g. to re-check a token's user)."""
        return await self._one(select(User).where(User.id == user_id))

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The usable key with this hash: not revoked, not expired, its user (if any) active."""
        now = utcnow()
        return await self._one(
            select(ApiKey)
            .outerjoin(User, User.id == ApiKey.user_id)
            .where(
                ApiKey.key_hash == key_hash,
                ApiKey.revoked_at.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
                or_(ApiKey.user_id.is_(None), User.is_active.is_(True)),
            )
        )

    async def touch_api_key(self, key_id: str) -> None:
        """Record that the key was just used (`last_used_at`)."""
        await self.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(last_used_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    async def mark_interrupted_runs(self) -> int:
        """At start: runs left `running` by a dead process become `interrupted`; how many."""
        return await mark_interrupted(self.session)
