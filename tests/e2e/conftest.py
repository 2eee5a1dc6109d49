"""Fixtures for API tests: the whole app, in process, on SQLite and on PostgreSQL.

`world` is one running app per database backend (a temporary SQLite file; a temporary
PostgreSQL database created for the session and dropped after it) with an
`httpx.AsyncClient` talking to it over ASGI, and two tenants — `home` (the bootstrap
tenant) and `foreign` — each with a logged-in user of every role. Tests share the world
(it is session-scoped, for speed), so they create what they need under unique names.

PostgreSQL follows the integration-test convention: unreachable -> the PostgreSQL
variants skip, except under `CI=true`, where they fail.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import pytest_asyncio
from e2e_helpers import (
    ADMIN_PASSWORD,
    PASSWORD,
    POSTGRES_URL,
    ROLES,
    Caller,
    World,
    asgi_client,
    login,
    make_settings,
    unique,
)
from pytest_asyncio import is_async_test
from sqlalchemy.engine import make_url

from agentguild.security import Principal, Role
from agentguild.server import create_app


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every e2e test runs in the session's event loop, the one the shared app lives in.
    marker = pytest.mark.asyncio(loop_scope="session")
    for item in items:
        if "tests/e2e" in str(item.path) and is_async_test(item):
            item.add_marker(marker, append=False)


def _postgres_available() -> None:
    parts = urlsplit(POSTGRES_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 1.0):
            return
    except OSError as exc:
        message = f"PostgreSQL is not reachable at {parts.netloc} ({exc})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


async def _admin_sql(sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this session (SQLAlchemy asyncpg URL); dropped after."""
    _postgres_available()
    name = f"agentguild_e2e_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin_sql(f'CREATE DATABASE "{name}"'))
    parts = urlsplit(POSTGRES_URL)
    url = urlunsplit(("postgresql+asyncpg", parts.netloc, f"/{name}", "", ""))
    yield url
    asyncio.run(_admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The database of the session's app: a SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'e2e.db'}"
    url: str = request.getfixturevalue("postgres_database")
    return url


async def _populate(world: World) -> None:
    services = world.app.state.services  # type: ignore[attr-defined]
    async with services.db.system() as system:
        home = await system.tenant_by_name("default")
        foreign = await system.create_tenant(unique("foreign"))
        admin = await system.user_by_username("admin")
    assert home is not None
    assert admin is not None
    world.home[Role.ADMIN] = Caller(home.id, Role.ADMIN, "admin", admin.id)
    for tenant_id, callers in ((home.id, world.home), (foreign.id, world.foreign)):
        async with services.db.repos(Principal(tenant_id, Role.ADMIN)) as repos:
            for role in ROLES:
                if role in callers:
                    continue
                username = unique(f"{role.value}@{'home' if callers is world.home else 'far'}")
                user = await repos.users.create(username, PASSWORD, role)
                callers[role] = Caller(tenant_id, role, username, user.id)
    for caller in (*world.home.values(), *world.foreign.values()):
        password = ADMIN_PASSWORD if caller.username == "admin" else PASSWORD
        caller.token = await login(world.client, caller.username, password)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def world(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    """The shared running app of one backend, with two populated tenants."""
    settings = make_settings(database_url, tmp_path_factory.mktemp("data"))
    app = create_app(settings, on_first_start=lambda _result: None)
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        backend = make_url(database_url).get_backend_name()
        world = World(backend, app, client, settings)
        await _populate(world)
        yield world


@pytest.fixture
def client(world: World) -> httpx.AsyncClient:
    return world.client


@pytest.fixture
def home(world: World) -> dict[Role, Caller]:
    """The bootstrap tenant's users, by role."""
    return world.home


@pytest.fixture
def foreign(world: World) -> dict[Role, Caller]:
    """Another tenant's users, by role."""
    return world.foreign
