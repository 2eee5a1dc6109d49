"""Probes and metrics: `/health`, `/ready`, `/health/detailed`, `/metrics`.

`/health` (liveness) and `/ready` (readiness: the database answers, and Redis and the
queue's broker when configured) need no credentials, for load balancers and orchestrators.
`/health/detailed` and `/metrics` reveal internals of the whole process (every tenant's
traffic), so they need `metrics:read` in the operators' tenant: the one created at first
start (give Prometheus an API key of a developer or admin there). Other tenants get 403.
"""

from __future__ import annotations

import asyncio
import platform
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from ...config import Settings
from ...runtime.instances import instance_metrics
from ...runtime.queue_metrics import queue_metrics
from ...security import Permission, Principal
from ..deps import SettingsDep, get_services, require
from ..errors import ApiError

router = APIRouter(tags=["health"])


async def _operator(
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.METRICS_READ))],
) -> Principal:
    if principal.tenant_id != getattr(request.app.state, "operator_tenant_id", None):
        raise ApiError(403, "forbidden", "process metrics are for the operators' tenant only")
    return principal


_Operator = Annotated[Principal, Depends(_operator)]

_CHECK_TIMEOUT_S = 2.0


class Health(BaseModel):
    """Liveness: the process serves requests."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Readiness: every dependency answered."""

    status: Literal["ready"] = "ready"
    checks: dict[str, str]


class DetailedHealth(BaseModel):
    """Readiness plus versions, uptime and where state lives."""

    status: Literal["ready", "degraded"]
    checks: dict[str, str]
    version: str
    python: str
    uptime_s: float
    database: str
    """The database backend: `sqlite` or `postgresql`."""
    redis: bool
    """Whether Redis is configured."""
    models: list[str]
    instances: dict[str, int] | None = None
    """Live server and worker processes sharing this database, by kind."""


async def _check(probe: Callable[[], Awaitable[None]]) -> str:
    try:
        await asyncio.wait_for(probe(), timeout=_CHECK_TIMEOUT_S)
    except TimeoutError:
        return f"timeout after {_CHECK_TIMEOUT_S:g} s"
    except Exception as exc:  # any failure means "not ready"; the reason is reported
        return f"error: {type(exc).__name__}"
    return "ok"


async def _redis_ping(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, socket_connect_timeout=_CHECK_TIMEOUT_S)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def _run_checks(request: Request, settings: Settings) -> dict[str, str]:
    probes: dict[str, Callable[[], Awaitable[None]]] = {"database": get_services(request).db.ping}
    redis_url = settings.server.redis_url
    if redis_url:
        probes["redis"] = lambda: _redis_ping(redis_url)
    queue = getattr(get_services(request), "queue", None)
    if queue is not None and settings.queue.backend == "celery":
        probes["broker"] = queue.ping
    results = await asyncio.gather(*(_check(probe) for probe in probes.values()))
    return dict(zip(probes, results, strict=True))


@router.get("/health", summary="Liveness probe")
async def health() -> Health:
    """Answers while the process serves requests (no dependency is checked)."""
    return Health()


@router.get(
    "/ready",
    summary="Readiness probe",
    responses={503: {"description": "A dependency is down"}},
)
async def ready(request: Request, settings: SettingsDep) -> Readiness:
    """200 when the database (and Redis and the broker, when configured) answer; 503 naming
    what failed."""
    checks = await _run_checks(request, settings)
    failed = sorted(name for name, result in checks.items() if result != "ok")
    if failed:
        raise ApiError(503, "unavailable", f"not ready: {', '.join(failed)}", {"checks": checks})
    return Readiness(checks=checks)


@router.get("/health/detailed", summary="Detailed health")
async def health_detailed(
    request: Request,
    settings: SettingsDep,
    _principal: _Operator,
) -> DetailedHealth:
    """Dependency checks, versions, uptime and configuration summary (no secrets)."""
    from importlib.metadata import PackageNotFoundError, version

    checks = await _run_checks(request, settings)
    instance = getattr(get_services(request), "instance", None)
    try:
        package_version = version("agentguild")
    except PackageNotFoundError:
        package_version = "unknown"
    started = getattr(request.app.state, "started_at", time.monotonic())
    return DetailedHealth(
        status="ready" if all(v == "ok" for v in checks.values()) else "degraded",
        checks=checks,
        version=package_version,
        python=platform.python_version(),
        uptime_s=round(time.monotonic() - started, 3),
        database=get_services(request).db.dialect,
        redis=settings.server.redis_url is not None,
        models=settings.model_names,
        instances=await instance.counts() if instance is not None else None,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(
    request: Request,
    _principal: _Operator,
) -> Response:
    """The server's metrics and the process-wide ones (models, cache, process)."""
    own: CollectorRegistry = request.app.state.metrics.registry
    body = generate_latest(own) + generate_latest(REGISTRY)
    queue = getattr(get_services(request), "queue", None)
    if queue is not None:
        body += await queue_metrics(queue)
    instance = getattr(get_services(request), "instance", None)
    if instance is not None:
        body += await instance_metrics(instance)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
