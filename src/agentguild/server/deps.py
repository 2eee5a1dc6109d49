"""FastAPI dependencies shared by every router: services, the caller, permission checks.

```python
@router.get("/api/things")
async def things(
    principal: Annotated[Principal, Depends(require(Permission.DATA_READ))],
    services: ServicesDep,
) -> ...: ...
```

Authentication takes a bearer token from the `Authorization` header (a JWT from
`POST /auth/token` or an `ag_...` API key; WebSockets may pass it as the `access_token`
query parameter instead, since browsers cannot set headers there). It costs no database
access on the hot path: JWTs are verified by signature, API keys through an in-memory
cache. Every authenticated request is then charged to its caller's rate limit (429).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, cast

from fastapi import Depends
from fastapi.requests import HTTPConnection
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..config import Settings
from ..runtime.services import Services
from ..security import Permission, Principal
from .authn import Authenticator
from .errors import ApiError
from .ratelimit import RateLimiter

__all__ = [
    "AuthenticatorDep",
    "ServicesDep",
    "SettingsDep",
    "authenticator_dep",
    "bearer_scheme",
    "check_message_size",
    "current_principal",
    "get_authenticator",
    "get_services",
    "get_settings",
    "require",
    "services_dep",
    "settings_dep",
]

WWW_AUTHENTICATE = {"WWW-Authenticate": "Bearer"}


class _Bearer(HTTPBearer):
    """`Authorization: Bearer <token>`; on WebSockets also `?access_token=<token>`."""

    async def __call__(self, request: HTTPConnection) -> HTTPAuthorizationCredentials | None:
        credentials = await super().__call__(request)
        if credentials is None and request.scope["type"] == "websocket":
            token = request.query_params.get("access_token")
            if token:
                return HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
        return credentials


bearer_scheme = _Bearer(
    scheme_name="bearer",
    bearerFormat="JWT or API key",
    description="A JWT from `POST /auth/token`, or an API key (`ag_...`).",
    auto_error=False,
)
"""The security scheme of every authenticated endpoint (shown in the OpenAPI docs)."""


def get_services(request: HTTPConnection) -> Services:
    """The application's services (settings, database, runner, agents).

    For direct calls; as a route dependency use `ServicesDep` (async: no thread hop).
    """
    return cast(Services, request.app.state.services)


def get_settings(request: HTTPConnection) -> Settings:
    """The application's settings."""
    return cast(Settings, request.app.state.settings)


def get_authenticator(request: HTTPConnection) -> Authenticator:
    """The application's authenticator (token and API-key verification, key cache)."""
    return cast(Authenticator, request.app.state.authenticator)


# Dependencies are async on purpose: FastAPI runs sync dependencies in a thread pool,
# which costs ~0.2 ms a request for what is a dictionary lookup.


async def services_dep(request: HTTPConnection) -> Services:
    """Dependency: the application's services (`get_services`, without a thread hop)."""
    return get_services(request)


async def settings_dep(request: HTTPConnection) -> Settings:
    """Dependency: the application's settings."""
    return get_settings(request)


async def authenticator_dep(request: HTTPConnection) -> Authenticator:
    """Dependency: the application's authenticator."""
    return get_authenticator(request)


ServicesDep = Annotated[Services, Depends(services_dep)]
"""A route parameter receiving the services: `services: ServicesDep`."""
SettingsDep = Annotated[Settings, Depends(settings_dep)]
"""A route parameter receiving the settings: `settings: SettingsDep`."""
AuthenticatorDep = Annotated[Authenticator, Depends(authenticator_dep)]
"""A route parameter receiving the authenticator."""


async def current_principal(
    request: HTTPConnection,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """The authenticated caller (401 without valid credentials, 429 over its rate limit)."""
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal):
        return principal
    if credentials is None:
        raise ApiError(
            401,
            "unauthenticated",
            "authentication required: send `Authorization: Bearer <token or API key>`",
            headers=WWW_AUTHENTICATE,
        )
    principal = await get_authenticator(request).authenticate(credentials.credentials)
    if principal is None:
        raise ApiError(
            401, "unauthenticated", "invalid or expired credentials", headers=WWW_AUTHENTICATE
        )
    # Noted before the rate limit, so the access log names the tenant of a 429 too.
    request.state.principal = principal
    limiter = cast(RateLimiter, request.app.state.rate_limiter)
    limiter.check(principal)
    return principal


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency returning the caller if its role grants `permission` (else 401/403)."""

    async def dependency(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if not principal.can(permission):
            raise ApiError(
                403,
                "forbidden",
                f"role {principal.role.value!r} lacks the permission {permission.value!r}",
            )
        return principal

    dependency.__name__ = f"require_{permission.name.lower()}"
    return dependency


def check_message_size(text: str | None, settings: Settings) -> None:
    """413 if one message's text is longer than `server.max_message_chars`."""
    limit = settings.server.max_message_chars
    if text is not None and len(text) > limit:
        raise ApiError(
            413,
            "payload_too_large",
            f"a message may hold at most {limit} characters; this one has {len(text)}",
            details={"limit": limit, "size": len(text)},
        )
