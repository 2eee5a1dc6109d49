"""Settings of the serving platform: database, security, HTTP server.

Part of `agentguild.config.Settings` (fields `database`, `security`, `server`), so they
come from the same config file and `AGENTGUILD_*` variables, e.g.
`AGENTGUILD_DATABASE__URL=postgresql+asyncpg://app@db/agentguild`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    """Where conversations, runs, users and keys are stored."""

    url: str = "sqlite+aiosqlite:///./agentguild.db"
    """SQLAlchemy async URL: `sqlite+aiosqlite:///path.db` (embedded default) or
    `postgresql+asyncpg://user:password@host/db` (production)."""
    auto_migrate: bool = True
    """Apply pending migrations at start (turn off when migrations are run as a deploy step
    with `agentguild db upgrade`)."""
    pool_size: Annotated[int, Field(ge=1)] = 20
    echo: bool = False
    """Log every SQL statement (debugging only)."""


class SecuritySettings(_Section):
    """Authentication: token signing, the first admin, key caching."""

    jwt_secret: SecretStr | None = Field(default=None, repr=False)
    """Key signing access tokens. Unset: generated once and kept in `data_dir` (fine for
    one instance; set it explicitly when several instances share the database)."""
    jwt_ttl_s: Annotated[int, Field(ge=60)] = 3600
    """Lifetime of an access token."""
    admin_username: str = "admin"
    """Login of the admin created on first start."""
    admin_password: SecretStr | None = Field(default=None, repr=False)
    """Password of that admin; unset: generated and printed once, on first start."""
    api_key_cache_ttl_s: Annotated[float, Field(ge=0)] = 30.0
    """How long a verified API key is trusted before it is looked up again (revocation
    takes effect at once on the instance that revokes, within this time elsewhere)."""


class ServerSettings(_Section):
    """The HTTP server and its gateway limits."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    data_dir: str = ".agentguild"
    """Directory for generated secrets and other local state."""
    cors_origins: list[str] = Field(default_factory=list)
    """Origins allowed to call the API from a browser (the built-in UI needs none)."""
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1_000_000
    """Largest request body accepted (413 above)."""
    max_message_chars: Annotated[int, Field(ge=1)] = 100_000
    """Longest single message accepted (413 above)."""
    rate_limit_per_minute: Annotated[int, Field(ge=1)] = 100
    rate_limit_burst: Annotated[int, Field(ge=0)] = 20
    rate_limit_per_hour: Annotated[int, Field(ge=1)] = 5000
    """Per API key and per user; exceeding gives 429 with Retry-After."""
    max_running_tasks: Annotated[int, Field(ge=1)] = 2
    """Planned tasks (`/api/tasks`) running at once in this process; more queue by priority."""
    redis_url: str | None = None
    """Redis for shared rate limits and caches across instances; unset: in-process."""
    event_bus: Literal["auto", "memory", "redis"] = "auto"
    """Where run events go: `memory` (this process only), `redis` (Redis Streams at
    `redis_url`: any instance can stream, and resume, any run), `auto` (Redis when
    `redis_url` is set)."""
    event_stream_ttl_s: Annotated[int, Field(ge=60)] = 86_400
    """How long a run's event stream stays in Redis after its last event or its end."""
    event_stream_maxlen: Annotated[int, Field(ge=1000)] = 100_000
    """About the most events one run's Redis stream keeps (a guard against runaway runs)."""
    heartbeat_interval_s: Annotated[float, Field(gt=0)] = 5.0
    """How often each server and worker process refreshes its row in `instances` (and
    sweeps for dead ones)."""
    instance_stale_after_s: Annotated[float, Field(gt=0)] = 30.0
    """A process whose heartbeat is older than this is dead: live instances interrupt its
    runs and take over its tasks. Must exceed `heartbeat_interval_s`."""

    @model_validator(mode="after")
    def _stale_after_beats(self) -> ServerSettings:
        if self.instance_stale_after_s <= self.heartbeat_interval_s:
            raise ValueError(
                "server.instance_stale_after_s must exceed server.heartbeat_interval_s "
                f"({self.instance_stale_after_s} <= {self.heartbeat_interval_s}); a few "
                "intervals is usual (defaults: 30 and 5)"
            )
        return self


class QueueSettings(_Section):
    """Background jobs (background runs, tasks): in-process or on Celery workers."""

    backend: Literal["inprocess", "celery"] = "inprocess"
    """`inprocess` (embedded default: asyncio workers in the server) or `celery` (jobs go
    to a broker and run in `agentguild worker` processes)."""
    broker_url: str | None = None
    """Celery broker: `redis://host:6379/0` or `amqp://user:password@host:5672//`."""
    queue_prefix: str = "agentguild"
    """Prefix of the broker queue names (`<prefix>.default`, `<prefix>.research`, ...)."""
    max_retries: Annotated[int, Field(ge=0)] = 3
    """Retries of a job failing with a transient error before it goes to the dead letters."""
    retry_backoff_s: Annotated[float, Field(ge=0)] = 1.0
    """First retry delay; doubled on each retry, with full jitter."""
    retry_backoff_max_s: Annotated[float, Field(ge=0)] = 60.0
    lease_s: Annotated[float, Field(ge=1)] = 60.0
    """How long a worker owns a running job without renewing its lease; a job whose lease
    expired (its worker died) may be taken over by a re-delivered message."""
    visibility_timeout_s: Annotated[int, Field(ge=1)] = 3600
    """Redis broker only: an unacknowledged message is re-delivered after this long."""
    concurrency: Annotated[int, Field(ge=1)] = 4
    """Jobs one in-process queue (or one worker) runs at a time."""
    resend_after_s: Annotated[float, Field(ge=0)] = 30.0
    """Celery only: a job still queued this long after it was stored (or released) and
    never handed to the broker (the send failed, or its sender died) is sent again."""
    sweep_interval_s: Annotated[float, Field(gt=0)] = 5.0
    """Celery only: how often a server looks for such unsent jobs."""
