"""Who is calling: bearer tokens (JWTs or `ag_...` API keys) to principals, cheaply.

JWTs are verified by signature alone (no database access), and remembered until they
expire, since a client sends the same token many times. API keys are looked up once
and then trusted from memory for `api_key_cache_ttl_s`; revoking a key on this instance
drops it from the cache at once (other instances notice within the TTL). Unknown keys
are remembered too, so a flood of bad keys cannot flood the database.

Deactivating or deleting a user on this instance refuses their outstanding JWTs here, and
demoting one caps their tokens at the new role; other instances honour such tokens until
they expire (`jwt_ttl_s`), the price of verifying tokens without the database.
"""

from __future__ import annotations

import base64
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

import orjson

from ..security import (
    AuthError,
    Principal,
    Role,
    decode_token,
    hash_api_key,
    looks_like_api_key,
)
from ..store.db import Database
from .errors import ApiError

__all__ = ["ROLE_RANK", "Authenticator", "ensure_grantable", "role_at_most"]

ROLE_RANK: dict[Role, int] = {Role.VIEWER: 0, Role.USER: 1, Role.DEVELOPER: 2, Role.ADMIN: 3}
"""Roles ordered by power (higher outranks lower)."""


def role_at_most(role: Role, ceiling: Role) -> bool:
    """Whether `role` is no more powerful than `ceiling`."""
    return ROLE_RANK[role] <= ROLE_RANK[ceiling]


def ensure_grantable(caller: Principal, role: Role) -> None:
    """Raise `ApiError` 403 unless `caller` may grant `role` (no higher than its own)."""
    if not role_at_most(role, caller.role):
        raise ApiError(
            403,
            "forbidden",
            f"cannot grant role {role.value!r} above your own ({caller.role.value!r})",
        )


@dataclass(slots=True)
class _Cached:
    principal: Principal | None
    """None: no usable key has this hash."""
    expires_at: float


class Authenticator:
    """Turns bearer credentials into principals; caches API keys (see the module doc)."""

    def __init__(
        self,
        db: Database,
        jwt_secret: str,
        *,
        api_key_cache_ttl_s: float = 30.0,
        jwt_ttl_s: float = 3600.0,
        max_cached_keys: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self._secret = jwt_secret
        self._ttl = api_key_cache_ttl_s
        self._jwt_ttl = jwt_ttl_s
        self._max = max_cached_keys
        self._clock = clock
        self._keys: OrderedDict[str, _Cached] = OrderedDict()
        self._tokens: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._blocked_users: dict[str, float] = {}
        self._role_caps: dict[str, tuple[Role, float]] = {}

    async def authenticate(self, token: str) -> Principal | None:
        """The principal `token` stands for, or None if it is invalid, expired or revoked."""
        if looks_like_api_key(token):
            return await self._api_key(token)
        principal = self._jwt(token)
        if principal is None:
            return None
        if self._blocked_users or self._role_caps:
            return self._revised(principal)
        return principal

    def _revised(self, principal: Principal) -> Principal | None:
        user_id = principal.user_id or ""
        now = self._clock()
        blocked_until = self._blocked_users.get(user_id)
        if blocked_until is not None:
            if blocked_until > now:
                return None
            del self._blocked_users[user_id]
        cap = self._role_caps.get(user_id)
        if cap is not None:
            if cap[1] <= now:
                del self._role_caps[user_id]
            elif not role_at_most(principal.role, cap[0]):
                return replace(principal, role=cap[0])
        return principal

    def _jwt(self, token: str) -> Principal | None:
        # A client sends the same token many times: remember verified ones until expiry.
        cached = self._tokens.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        try:
            principal = decode_token(token, self._secret)
        except AuthError:
            return None
        expires = _expiry(token)
        if expires is not None:
            self._tokens[token] = (principal, expires)
            if len(self._tokens) > self._max:
                self._tokens.popitem(last=False)
        return principal

    def invalidate_api_key(self, key_id: str) -> None:
        """Forget the cached key with this id (after revoking it)."""
        for key_hash, cached in list(self._keys.items()):
            if cached.principal is not None and cached.principal.api_key_id == key_id:
                del self._keys[key_hash]

    def user_changed(self, user_id: str, *, role: Role | None, active: bool) -> None:
        """Apply a user's new role or deactivation to their outstanding credentials here.

        A deactivated (or deleted: `active=False`) user's JWTs are refused; a demoted
        user's JWTs are capped at the new role. Their API keys are looked up afresh.
        """
        until = self._clock() + self._jwt_ttl
        if active:
            self._blocked_users.pop(user_id, None)
        else:
            self._blocked_users[user_id] = until
        if role is not None:
            self._role_caps[user_id] = (role, until)
        for key_hash, cached in list(self._keys.items()):
            if cached.principal is not None and cached.principal.user_id == user_id:
                del self._keys[key_hash]

    async def _api_key(self, token: str) -> Principal | None:
        key_hash = hash_api_key(token)
        now = self._clock()
        cached = self._keys.get(key_hash)
        if cached is not None and cached.expires_at > now:
            return cached.principal
        principal = await self._lookup(key_hash)
        self._keys[key_hash] = _Cached(principal, now + self._ttl)
        self._keys.move_to_end(key_hash)
        while len(self._keys) > self._max:
            self._keys.popitem(last=False)
        return principal

    async def _lookup(self, key_hash: str) -> Principal | None:
        async with self.db.system() as system:
            key = await system.api_key_by_hash(key_hash)
            if key is None:
                return None
            role = Role(key.role)
            username = None
            if key.user_id is not None:
                user = await system.get_user(key.user_id)
                if user is None or not user.is_active:
                    return None
                username = user.username
                # A key never grants more than its user currently has.
                if not role_at_most(role, Role(user.role)):
                    role = Role(user.role)
            # On a cache miss only: `last_used_at` is approximate, never a per-request write.
            await system.touch_api_key(key.id)
            return Principal(
                tenant_id=key.tenant_id,
                role=role,
                user_id=key.user_id,
                api_key_id=key.id,
                username=username,
            )


def _expiry(token: str) -> float | None:
    """The `exp` claim of a token whose signature was already verified."""
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, orjson.JSONDecodeError):
        return None
    expires = claims.get("exp") if isinstance(claims, dict) else None
    return float(expires) if isinstance(expires, int | float) else None
