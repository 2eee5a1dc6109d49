"""Users of a tenant: login name, password hash, role."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from agentguild.security.passwords import ahash_password
from agentguild.security.principal import Role

from ..errors import ConflictError
from ..ids import new_id
from ..models import User, utcnow
from ..views import Page
from ._base import TenantRepo, newest_first, page_of


class UserRepo(TenantRepo):
    """The tenant's users. Passwords are given in plain text and stored as argon2id hashes."""

    async def create(self, username: str, password: str, role: Role | str) -> User:
        """A new active user; ConflictError if the username is taken (in any tenant)."""
        user = User(
            id=new_id("usr"),
            tenant_id=self._tenant_id,
            username=username,
            password_hash=await ahash_password(password),
            role=Role(role).value,
            is_active=True,
            created_at=utcnow(),
        )
        self._session.add(user)
        try:
            await self._session.flush()
        except IntegrityError as exc:
            raise ConflictError(f"username {username!r} is taken") from exc
        return self._detach(user)

    async def get(self, user_id: str) -> User | None:
        """The user, or None."""
        return await self._one(
            select(User).where(User.tenant_id == self._tenant_id, User.id == user_id)
        )

    async def list(self, limit: int = 50, cursor: str | None = None) -> Page[User]:
        """Users newest first."""
        query = select(User).where(User.tenant_id == self._tenant_id)
        query = newest_first(query, User.created_at, User.id, cursor, limit)
        return page_of(await self._all(query), limit)

    async def update(
        self,
        user_id: str,
        *,
        role: Role | str | None = None,
        is_active: bool | None = None,
        password: str | None = None,
    ) -> User | None:
        """Change role, active flag and/or password; None if not found."""
        values: dict[str, Any] = {}
        if role is not None:
            values["role"] = Role(role).value
        if is_active is not None:
            values["is_active"] = is_active
        if password is not None:
            values["password_hash"] = await ahash_password(password)
        if values:
            await self._session.execute(
                update(User)
                .where(User.tenant_id == self._tenant_id, User.id == user_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        return await self.get(user_id)

    async def delete(self, user_id: str) -> bool:
        """Delete the user and their API keys; False if not found."""
        found = await self._session.scalar(
            delete(User)
            .where(User.tenant_id == self._tenant_id, User.id == user_id)
            .returning(User.id)
            .execution_options(synchronize_session=False)
        )
        return found is not None
