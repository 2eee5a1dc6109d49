"""API keys: `/api/keys` (your own) and `/api/admin/keys` (the tenant's; `users:manage`).

A key is shown in full once, in the response that creates it; only its hash is stored.
Nobody gives a key a role above their own (or above its user's). Revoking a key takes
effect at once on this instance (within `security.api_key_cache_ttl_s` on others).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...runtime.services import Services
from ...security import Permission, Principal, Role
from ...store.models import ApiKey
from ..authn import Authenticator, ensure_grantable, role_at_most
from ..deps import AuthenticatorDep, ServicesDep, current_principal, require
from ..errors import ApiError
from ._params import ID_PATTERN, Cursor, IdPath, Limit, Page, Text200

router = APIRouter(tags=["keys"])

_Admin = Annotated[Principal, Depends(require(Permission.USERS_MANAGE))]
_Caller = Annotated[Principal, Depends(current_principal)]
_Services = ServicesDep
_Auth = AuthenticatorDep


class KeyCreate(BaseModel):
    """A new API key; `role` defaults to the caller's own and may not exceed it."""

    model_config = ConfigDict(extra="forbid")

    name: Text200 = ""
    role: Role | None = None
    expires_at: datetime | None = None
    """When the key stops working (UTC if no offset is given); null: never."""

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        if value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return value


class AdminKeyCreate(KeyCreate):
    """A new API key for a user of the tenant (the caller when `user_id` is null)."""

    user_id: Annotated[str, Field(pattern=ID_PATTERN)] | None = None


class KeyOut(BaseModel):
    """An API key's metadata; `prefix` helps recognise it (the key itself is never shown)."""

    id: str
    name: str
    prefix: str
    role: Role
    user_id: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, row: ApiKey) -> KeyOut:
        return cls(
            id=row.id,
            name=row.name,
            prefix=row.prefix,
            role=Role(row.role),
            user_id=row.user_id,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            last_used_at=row.last_used_at,
        )


class KeyCreated(KeyOut):
    """A new API key, with the key itself: store it now, it is never shown again."""

    key: str


async def _create_key(
    services: Services, principal: Principal, body: KeyCreate, user_id: str | None
) -> KeyCreated:
    role = body.role or principal.role
    ensure_grantable(principal, role)
    async with services.db.repos(principal) as repos:
        if user_id is not None and user_id != principal.user_id:
            owner = await repos.users.get(user_id)
            if owner is None:
                raise ApiError(404, "not_found", f"user {user_id!r} not found")
            if not role_at_most(role, Role(owner.role)):
                raise ApiError(
                    403, "forbidden", f"the key's role may not exceed its user's ({owner.role})"
                )
        key, plaintext = await repos.api_keys.create(
            body.name, role, user_id=user_id, expires_at=body.expires_at
        )
    return KeyCreated(**KeyOut.of(key).model_dump(), key=plaintext)


async def _revoke(
    services: Services, auth: Authenticator, principal: Principal, key_id: str, own: bool
) -> None:
    async with services.db.repos(principal) as repos:
        key = await repos.api_keys.get(key_id)
        if key is None or (own and key.user_id != principal.user_id):
            raise ApiError(404, "not_found", f"API key {key_id!r} not found")
        await repos.api_keys.revoke(key_id)
    auth.invalidate_api_key(key_id)


@router.get("/api/admin/keys", summary="List the tenant's API keys")
async def list_keys(
    principal: _Admin,
    services: _Services,
    user_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[KeyOut]:
    """Every key of the tenant (revoked ones included), or one user's."""
    async with services.db.repos(principal) as repos:
        page = await repos.api_keys.list(user_id=user_id, limit=limit, cursor=cursor)
    return Page(items=[KeyOut.of(k) for k in page.items], next_cursor=page.next_cursor)


@router.post("/api/admin/keys", status_code=201, summary="Create an API key for a user")
async def create_key_for_user(
    body: AdminKeyCreate, principal: _Admin, services: _Services
) -> KeyCreated:
    """A new key for a user of the tenant; the key is in this response only."""
    return await _create_key(services, principal, body, body.user_id or principal.user_id)


@router.delete("/api/admin/keys/{key_id}", status_code=204, summary="Revoke any API key")
async def revoke_any_key(
    key_id: IdPath, principal: _Admin, services: _Services, auth: _Auth
) -> Response:
    """Revoke a key of the tenant."""
    await _revoke(services, auth, principal, key_id, own=False)
    return Response(status_code=204)


@router.get("/api/keys", summary="List your API keys")
async def list_own_keys(
    principal: _Caller, services: _Services, limit: Limit = 50, cursor: Cursor = None
) -> Page[KeyOut]:
    """The caller's own keys (revoked ones included)."""
    owner = principal.user_id or ""
    async with services.db.repos(principal) as repos:
        page = await repos.api_keys.list(user_id=owner, limit=limit, cursor=cursor)
    return Page(items=[KeyOut.of(k) for k in page.items], next_cursor=page.next_cursor)


@router.post("/api/keys", status_code=201, summary="Create an API key for yourself")
async def create_own_key(body: KeyCreate, principal: _Caller, services: _Services) -> KeyCreated:
    """A new key acting as you, with your role or a lower one; shown in this response only.

    Needs a password login (a JWT): an API key cannot mint further keys.
    """
    if principal.api_key_id is not None or principal.user_id is None:
        raise ApiError(403, "forbidden", "log in with a password to create API keys")
    return await _create_key(services, principal, body, principal.user_id)


@router.delete("/api/keys/{key_id}", status_code=204, summary="Revoke one of your API keys")
async def revoke_own_key(
    key_id: IdPath, principal: _Caller, services: _Services, auth: _Auth
) -> Response:
    """Revoke one of the caller's own keys (404 for anyone else's)."""
    await _revoke(services, auth, principal, key_id, own=True)
    return Response(status_code=204)
