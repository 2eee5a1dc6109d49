"""The application factory: `create_app(settings)` builds the whole HTTP server.

```python
app = create_app(load_settings())
uvicorn.run(app, host=settings.server.host, port=settings.server.port, access_log=False)
```

At start (the lifespan) it connects the database (migrating it if configured), registers
this process in `instances` (from then on its heartbeat interrupts the runs, fails the
running tasks and takes over the pending tasks of processes that died), creates the first
tenant, admin and `assistant` agent on an empty database
(showing a generated admin password once), loads or creates the JWT signing key, and
builds the shared services. At shutdown it stops active runs and tasks and closes
everything.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from starlette.routing import Match, Mount
from starlette.types import Scope

from ..config import Settings, load_settings
from ..runtime._events_redis import EventBusCollector, RedisEventBus
from ..runtime.agent_factory import ModelProvider
from ..runtime.runner import NoAgentError, RunLimitError
from ..runtime.services import Services
from ..security import BootstrapResult, bootstrap, load_or_create_jwt_secret
from ..security.bootstrap import DEFAULT_TENANT
from ..tools.base import Tool
from .authn import Authenticator
from .errors import ERROR_RESPONSES, install_error_handlers, register_error
from .middleware import GatewayMiddleware, HttpMetrics
from .ratelimit import RateLimiter
from .routes import (
    admin,
    agents,
    auth,
    conversations,
    health,
    jobs,
    keys,
    openai_compat,
    runs,
    tasks,
    ws,
)

__all__ = ["WEB_DIR", "create_app"]

WEB_DIR = Path(__file__).parent / "web"
"""The built-in web UI, served at `/` when present."""
_API_PREFIXES = ("/api/", "/v1/", "/auth/", "/docs", "/redoc", "/openapi.json")


def announce_admin(result: BootstrapResult) -> None:
    """Show a generated admin password, once, on stderr (it is never logged)."""
    sys.stderr.write(
        "\n"
        f"agentguild: created the admin user {result.admin_username!r}; "
        f"password: {result.generated_password}\n"
        "  This is shown once. Log in and change it, or choose it with "
        "AGENTGUILD_SECURITY__ADMIN_PASSWORD before the first start.\n\n"
    )
    sys.stderr.flush()


def create_app(
    settings: Settings | None = None,
    *,
    model_provider: ModelProvider | None = None,
    tools: Mapping[str, Tool] | None = None,
    on_first_start: Callable[[BootstrapResult], None] = announce_admin,
) -> FastAPI:
    """The agentguild HTTP server as an ASGI application.

    `settings` default to `load_settings()` (environment and config file). `model_provider`
    and `tools` replace the model registry and the built-in tools (tests, embedding);
    `on_first_start` receives the bootstrap result when a password was generated.
    """
    settings = settings or load_settings()
    server = settings.server

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await Services.start(settings, model_provider=model_provider, tools=tools)
        try:
            result = await bootstrap(services.db, settings.security, settings.default_model)
            if result.generated_password is not None:
                on_first_start(result)
            secret = load_or_create_jwt_secret(settings.security, Path(server.data_dir))
            app.state.services = services
            _register_event_bus_metrics(metrics.registry, services)
            app.state.operator_tenant_id = await _operator_tenant(services)
            app.state.jwt_secret = secret
            app.state.authenticator = Authenticator(
                services.db,
                secret,
                api_key_cache_ttl_s=settings.security.api_key_cache_ttl_s,
                jwt_ttl_s=settings.security.jwt_ttl_s,
            )
            app.state.started_at = time.monotonic()
            yield
        finally:
            await services.aclose()

    app = FastAPI(
        title="agentguild",
        summary="LLM agents, tools and teams, served.",
        version=_version(),
        lifespan=lifespan,
    )
    metrics = HttpMetrics(CollectorRegistry(auto_describe=True))
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.rate_limiter = RateLimiter.from_settings(server)
    app.state.login_limiter = RateLimiter(
        max(1, server.rate_limit_per_minute // 4),
        max(1, server.rate_limit_burst // 2),
        max(1, server.rate_limit_per_hour // 10),
    )
    register_error(RunLimitError, 429, "too_many_active_runs")
    register_error(NoAgentError, 400, "no_agent")
    install_error_handlers(app)
    routers = (
        health,
        auth,
        agents,
        conversations,
        runs,
        tasks,
        openai_compat,
        ws,
        keys,
        admin,
        jobs,
    )
    for module in routers:
        app.include_router(module.router, responses=ERROR_RESPONSES)
    if (WEB_DIR / "index.html").is_file():
        app.router.routes.append(_WebMount(StaticFiles(directory=WEB_DIR, html=True)))
    if server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(server.cors_origins),
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID", "Last-Event-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(GatewayMiddleware, metrics=metrics, max_body_bytes=server.max_body_bytes)
    return app


class _WebMount(Mount):
    """The web UI at `/`: GET and HEAD of paths that are not the API's (those 404/405 as
    API errors rather than falling through to the UI)."""

    def __init__(self, app: StaticFiles) -> None:
        super().__init__("/", app=app, name="web")

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD"):
            return Match.NONE, {}
        path = scope.get("path", "")
        if path.startswith(_API_PREFIXES):
            return Match.NONE, {}
        return super().matches(scope)


async def _operator_tenant(services: Services) -> str | None:
    """The tenant whose admins and developers may see process-wide metrics: the first."""
    async with services.db.system() as system:
        tenant = await system.tenant_by_name(DEFAULT_TENANT)
    return None if tenant is None else tenant.id


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentguild")
    except PackageNotFoundError:
        return "0.0.0"


def _register_event_bus_metrics(registry: CollectorRegistry, services: Services) -> None:
    events = services.runner.events
    if isinstance(events, RedisEventBus):
        registry.register(EventBusCollector(events.stats))
