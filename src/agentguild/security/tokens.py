"""Access tokens: JWT (HS256) carrying the principal; claims sub, tid, role, exp, iat, jti."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import jwt

from .errors import AuthError
from .principal import Principal, Role

ALGORITHM = "HS256"
_LEEWAY_S = 10


def issue_token(
    principal: Principal,
    secret: str,
    ttl_s: int,
    *,
    now: Callable[[], float] = time.time,
) -> str:
    """A signed token for a user principal, valid for `ttl_s` seconds."""
    if principal.user_id is None:
        raise ValueError("tokens are issued to users; this principal has no user_id")
    issued = int(now())
    claims: dict[str, object] = {
        "sub": principal.user_id,
        "tid": principal.tenant_id,
        "role": principal.role.value,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": secrets.token_urlsafe(12),
    }
    if principal.username is not None:
        claims["name"] = principal.username
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(token: str, secret: str, *, now: Callable[[], float] = time.time) -> Principal:
    """The principal a token carries; AuthError if it is expired, forged or malformed."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "tid", "role", "exp", "iat", "jti"], "verify_exp": False},
        )
    except jwt.InvalidSignatureError as exc:
        raise AuthError("invalid token signature") from exc
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    # Expiry is checked here rather than by PyJWT so the clock can be injected.
    if not isinstance(claims["exp"], int | float) or claims["exp"] + _LEEWAY_S <= now():
        raise AuthError("token expired; log in again")
    try:
        role = Role(claims["role"])
    except ValueError as exc:
        raise AuthError(f"invalid token: unknown role {claims['role']!r}") from exc
    name = claims.get("name")
    return Principal(
        tenant_id=str(claims["tid"]),
        role=role,
        user_id=str(claims["sub"]),
        username=name if isinstance(name, str) else None,
    )
