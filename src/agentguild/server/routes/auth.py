"""`POST /auth/token`: a username and password for a short-lived access token (JWT).

Accepts an OAuth2 password-grant form (`application/x-www-form-urlencoded`, so the
"Authorize" button of `/docs` and OAuth2 clients work) or JSON `{username, password}`.
Wrong passwords, unknown users and deactivated users all get the same 401, in the same
time (an unknown user's password is checked against a dummy hash). Attempts are rate
limited per client address and username.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..._platform_settings import SecuritySettings
from ...security import Permission, Principal, Role, averify_password, issue_token
from ..deps import SettingsDep, current_principal, get_services
from ..errors import ApiError, ErrorBody

router = APIRouter(tags=["auth"])

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class Credentials(BaseModel):
    """A user's login."""

    model_config = ConfigDict(extra="ignore")

    username: Annotated[str, Field(min_length=1, max_length=200)]
    password: Annotated[str, Field(min_length=1, max_length=1000)]


class Token(BaseModel):
    """An access token: send it as `Authorization: Bearer <access_token>`."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    """Seconds until the token expires."""


_SCHEMA = Credentials.model_json_schema()
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _SCHEMA},
            "application/x-www-form-urlencoded": {
                "schema": {
                    **_SCHEMA,
                    "properties": {
                        **_SCHEMA["properties"],
                        "grant_type": {"type": "string", "enum": ["password"]},
                    },
                }
            },
        },
    }
}


async def _read_credentials(request: Request) -> Credentials:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data: Any
    if content_type in _FORM_TYPES:
        form = await request.form()
        data = {key: value for key, value in form.items() if isinstance(value, str)}
        grant = data.get("grant_type")
        if grant is not None and grant != "password":
            raise ApiError(400, "unsupported_grant_type", "only grant_type=password is supported")
    elif content_type == "application/json" or content_type.endswith("+json"):
        try:
            data = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(422, "validation_error", "the request body is not valid JSON") from exc
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send application/json or application/x-www-form-urlencoded",
        )
    try:
        return Credentials.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_input=False)]
        ) from exc


@router.post(
    "/auth/token",
    summary="Log in: get an access token",
    openapi_extra=_BODY,
    responses={415: {"model": ErrorBody, "description": "Unsupported media type"}},
)
async def issue_access_token(request: Request, settings: SettingsDep) -> Token:
    """An access token for the user's tenant and role, valid `expires_in` seconds."""
    credentials = await _read_credentials(request)
    client = request.client.host if request.client else "unknown"
    # Per address (any usernames) and, tighter, per address and username.
    request.app.state.rate_limiter.check_key(f"login:{client}")
    request.app.state.login_limiter.check_key(f"login:{client}:{credentials.username}")
    services = get_services(request)
    async with services.db.system() as system:
        user = await system.user_by_username(credentials.username)
    # None checks a dummy hash: unknown users take as long as wrong passwords.
    password_hash = user.password_hash if user is not None else None
    valid = await averify_password(password_hash, credentials.password)
    if user is None or not valid or not user.is_active:
        raise ApiError(
            401,
            "invalid_credentials",
            "wrong username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = Principal(
        tenant_id=user.tenant_id, role=Role(user.role), user_id=user.id, username=user.username
    )
    security: SecuritySettings = settings.security
    secret: str = request.app.state.jwt_secret
    token = issue_token(principal, secret, security.jwt_ttl_s)
    return Token(access_token=token, expires_in=security.jwt_ttl_s)


class Me(BaseModel):
    """The caller, as the server sees it."""

    tenant_id: str
    user_id: str | None
    username: str | None
    role: Role
    permissions: list[Permission]
    api_key_id: str | None
    """The API key used, if the caller authenticated with one."""


@router.get("/api/me", summary="Who am I")
async def me(principal: Annotated[Principal, Depends(current_principal)]) -> Me:
    """The caller's tenant, user, role and permissions (for UIs and debugging)."""
    return Me(
        tenant_id=principal.tenant_id,
        user_id=principal.user_id,
        username=principal.username,
        role=principal.role,
        permissions=sorted(principal.permissions),
        api_key_id=principal.api_key_id,
    )
