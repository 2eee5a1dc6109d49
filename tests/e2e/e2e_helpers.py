"""Helpers of the API tests: users, settings, clients (fixtures are in conftest.py)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr

from agentguild._platform_settings import DatabaseSettings, SecuritySettings, ServerSettings
from agentguild.config import ScriptedModelConfig, Settings
from agentguild.security import Principal, Role

POSTGRES_URL = os.environ.get(
    "AGENTGUILD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
ADMIN_PASSWORD = "admin-password-e2e"
PASSWORD = "password-e2e-123"
SCRIPTED_REPLY = "Hello from the script."
ROLES = (Role.ADMIN, Role.DEVELOPER, Role.USER, Role.VIEWER)
UNLIMITED = {
    "rate_limit_per_minute": 10**9,
    "rate_limit_burst": 10**9,
    "rate_limit_per_hour": 10**9,
}


def unique(prefix: str) -> str:
    """A name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Caller:
    """A logged-in user of one tenant."""

    tenant_id: str
    role: Role
    username: str
    user_id: str
    token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def principal(self) -> Principal:
        return Principal(self.tenant_id, self.role, user_id=self.user_id, username=self.username)


@dataclass
class World:
    """A running app, a client, and two tenants with a user of every role each."""

    backend: str
    app: object
    client: httpx.AsyncClient
    settings: Settings
    home: dict[Role, Caller] = field(default_factory=dict)
    foreign: dict[Role, Caller] = field(default_factory=dict)

    @property
    def services(self) -> object:
        return self.app.state.services  # type: ignore[attr-defined]


def make_settings(database_url: str, data_dir: Path, **server: object) -> Settings:
    """Settings of a test server: a scripted default model, known admin password."""
    return Settings(
        models={"scripted": ScriptedModelConfig(provider="scripted", replies=[SCRIPTED_REPLY])},
        default_model="scripted",
        database=DatabaseSettings(url=database_url),
        security=SecuritySettings(
            jwt_secret=SecretStr("e2e-" + "s" * 40), admin_password=SecretStr(ADMIN_PASSWORD)
        ),
        server=ServerSettings.model_validate({"data_dir": str(data_dir), **UNLIMITED, **server}),
    )


async def login(client: httpx.AsyncClient, username: str, password: str) -> str:
    response = await client.post("/auth/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def asgi_client(app: object) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of a token or API key."""
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int, error_type: str | None = None) -> None:
    """The response is an error in the one error shape, with this status (and type)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"type", "message", "details"}, body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    if error_type is not None:
        assert body["error"]["type"] == error_type, body
