"""API keys of a tenant. Only a SHA-256 of each key is stored; the key is shown once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from agentguild.security.api_keys import generate_api_key
from agentguild.security.principal import Role

from ..errors import NotFoundError
from ..ids import new_id
from ..models import ApiKey, User, utcnow
from ..views import Page
from ._base import TenantRepo, newest_first, page_of


class ApiKeyRepo(TenantRepo):
    """The tenant's API keys."""

    async def create(
        self,
        name: str,
        role: Role | str,
        user_id: str | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its plaintext (returned only here, never stored).

        NotFoundError if `user_id` is given and is not a user of this tenant. Whether the
        caller may grant `role` is the caller's decision (the server allows at most its own).
        """
        if user_id is not None:
            found = await self._session.scalar(
                select(User.id).where(User.tenant_id == self._tenant_id, User.id == user_id)
            )
            if found is None:
                raise NotFoundError(f"user {user_id!r} not found")
        plaintext, prefix, key_hash = generate_api_key()
        key = ApiKey(
            id=new_id("key"),
            tenant_id=self._tenant_id,
            user_id=user_id,
            name=name,
            prefix=prefix,
            key_hash=key_hash,
            role=Role(role).value,
            created_at=utcnow(),
            expires_at=expires_at,
        )
        self._session.add(key)
        await self._session.flush()
        return self._detach(key), plaintext

    async def get(self, key_id: str) -> ApiKey | None:
        """The key (revoked or not), or None."""
        return await self._one(
            select(ApiKey).where(ApiKey.tenant_id == self._tenant_id, ApiKey.id == key_id)
        )

    async def list(
        self, user_id: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page[ApiKey]:
        """Keys newest first (revoked ones included), only `user_id`'s when given."""
        query = select(ApiKey).where(ApiKey.tenant_id == self._tenant_id)
        if user_id is not None:
            query = query.where(ApiKey.user_id == user_id)
        query = newest_first(query, ApiKey.created_at, ApiKey.id, cursor, limit)
        return page_of(await self._all(query), limit)

    async def revoke(self, key_id: str) -> bool:
        """Revoke the key at once; False if not found or already revoked."""
        found = await self._session.scalar(
            update(ApiKey)
            .where(
                ApiKey.tenant_id == self._tenant_id,
                ApiKey.id == key_id,
                ApiKey.revoked_at.is_(None),
            )
            .values(revoked_at=utcnow())
            .returning(ApiKey.id)
            .execution_options(synchronize_session=False)
        )
        return found is not None
