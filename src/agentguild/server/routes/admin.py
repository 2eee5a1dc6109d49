"""`/api/admin/users`: the tenant's users (needs `users:manage`).

No privilege escalation: nobody grants a role above their own or changes a user who
outranks them; admins cannot deactivate, demote or delete themselves. A deactivated,
deleted or demoted user's credentials are refused (or capped) at once on this instance.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from ...security import Permission, Principal, Role
from ...store.models import User
from ..authn import ensure_grantable, role_at_most
from ..deps import AuthenticatorDep, ServicesDep, require
from ..errors import ApiError
from ._params import Cursor, IdPath, Limit, Page

router = APIRouter(tags=["admin"])

_Admin = Annotated[Principal, Depends(require(Permission.USERS_MANAGE))]
_Services = ServicesDep
_Auth = AuthenticatorDep
_Password = Annotated[str, Field(min_length=8, max_length=1000)]


class UserCreate(BaseModel):
    """A new user of the caller's tenant."""

    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,199}$")]
    password: _Password
    role: Role = Role.USER


class UserUpdate(BaseModel):
    """Changes to a user."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    is_active: bool | None = None
    password: _Password | None = None


class UserOut(BaseModel):
    """A user (never the password hash)."""

    id: str
    username: str
    role: Role
    is_active: bool
    created_at: datetime

    @classmethod
    def of(cls, row: User) -> UserOut:
        return cls(
            id=row.id,
            username=row.username,
            role=Role(row.role),
            is_active=row.is_active,
            created_at=row.created_at,
        )


@router.get("/api/admin/users", summary="List users")
async def list_users(
    principal: _Admin, services: _Services, limit: Limit = 50, cursor: Cursor = None
) -> Page[UserOut]:
    """The tenant's users, newest first."""
    async with services.db.repos(principal) as repos:
        page = await repos.users.list(limit=limit, cursor=cursor)
    return Page(items=[UserOut.of(u) for u in page.items], next_cursor=page.next_cursor)


@router.post("/api/admin/users", status_code=201, summary="Create a user")
async def create_user(body: UserCreate, principal: _Admin, services: _Services) -> UserOut:
    """A new active user (409 if the username is taken in any tenant)."""
    ensure_grantable(principal, body.role)
    async with services.db.repos(principal) as repos:
        return UserOut.of(await repos.users.create(body.username, body.password, body.role))


@router.get("/api/admin/users/{user_id}", summary="Get a user")
async def get_user(user_id: IdPath, principal: _Admin, services: _Services) -> UserOut:
    """One user of the tenant."""
    async with services.db.repos(principal) as repos:
        user = await repos.users.get(user_id)
    if user is None:
        raise ApiError(404, "not_found", f"user {user_id!r} not found")
    return UserOut.of(user)


async def _managed_user(services: _Services, principal: Principal, user_id: str) -> User:
    async with services.db.repos(principal) as repos:
        user = await repos.users.get(user_id)
    if user is None:
        raise ApiError(404, "not_found", f"user {user_id!r} not found")
    if not role_at_most(Role(user.role), principal.role):
        raise ApiError(403, "forbidden", "cannot change a user who outranks you")
    return user


@router.patch("/api/admin/users/{user_id}", summary="Update a user")
async def update_user(
    user_id: IdPath, body: UserUpdate, principal: _Admin, services: _Services, auth: _Auth
) -> UserOut:
    """Change a user's role, active flag or password."""
    await _managed_user(services, principal, user_id)
    if body.role is not None:
        ensure_grantable(principal, body.role)
    demoting = body.role is not None and body.role != principal.role
    if user_id == principal.user_id and (body.is_active is False or demoting):
        raise ApiError(409, "conflict", "you cannot deactivate or demote yourself")
    async with services.db.repos(principal) as repos:
        user = await repos.users.update(
            user_id, role=body.role, is_active=body.is_active, password=body.password
        )
    if user is None:
        raise ApiError(404, "not_found", f"user {user_id!r} not found")
    auth.user_changed(user.id, role=Role(user.role), active=user.is_active)
    return UserOut.of(user)


@router.delete("/api/admin/users/{user_id}", status_code=204, summary="Delete a user")
async def delete_user(
    user_id: IdPath, principal: _Admin, services: _Services, auth: _Auth
) -> Response:
    """Delete a user and their API keys (their conversations stay with the tenant)."""
    await _managed_user(services, principal, user_id)
    if user_id == principal.user_id:
        raise ApiError(409, "conflict", "you cannot delete yourself")
    async with services.db.repos(principal) as repos:
        await repos.users.delete(user_id)
    auth.user_changed(user_id, role=None, active=False)
    return Response(status_code=204)
