"""Settings of the model gateway: per-model routing, cache policy, retries, limits, prices.

A model's `gateway` section (all optional) and the top-level `cache` section of
`agentguild.config.Settings`:

```yaml
cache: {l2: disk}                 # or {l2: redis, redis_url: redis://cache:6379/0}
models:
  qwen-plus:
    provider: openai
    model: qwen-plus
    base_url: https://dashscope.aliyuncs.com/compatible-mode/v1
    api_key_env: DASHSCOPE_API_KEY
    gateway:
      deployments:                # more endpoints serving the same model
        - {base_url: https://backup.example/v1, api_key_env: BACKUP_KEY, weight: 0.5}
      strategy: weighted          # round_robin | least_in_flight | lowest_latency
      fallbacks: [gpt-4o-mini]    # other configured models, in order
      context_fallbacks: [qwen-long]
      cache: {policy: deterministic, ttl_s: 3600}
      retry: {max_attempts: 3}
      breaker: {failure_rate: 0.5, min_requests: 10, cooldown_s: 30}
      rate_limit: {requests_per_minute: 600, tokens_per_minute: 200000}
      price: {input_per_mtok: 0.4, output_per_mtok: 1.2}
```
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeploymentConfig(_Section):
    """Another endpoint serving the same model (fields default to the model's own)."""

    base_url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    model: str | None = None
    """The model id at this endpoint; default: the model's `model`."""
    api_key_env: str | None = None
    """The NAME of the environment variable holding this endpoint's key."""
    api_key: SecretStr | None = Field(default=None, repr=False)
    """The key itself, from the environment only."""
    weight: Annotated[float, Field(gt=0)] = 1.0


class CachePolicyConfig(_Section):
    """Which answers of this model are cached, and for how long."""

    policy: Literal["off", "deterministic", "always"] = "deterministic"
    """`deterministic`: only requests with temperature 0 or a seed."""
    ttl_s: Annotated[float, Field(gt=0)] = 3600.0


class RetryConfig(_Section):
    """Retries of 429, 408, 5xx, timeouts and connection errors."""

    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    base_delay_s: Annotated[float, Field(gt=0)] = 0.5
    max_delay_s: Annotated[float, Field(gt=0)] = 30.0
    max_retry_after_s: Annotated[float, Field(gt=0)] = 60.0


class BreakerConfig(_Section):
    """The per-deployment circuit breaker."""

    failure_rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    min_requests: Annotated[int, Field(ge=1)] = 10
    window_s: Annotated[float, Field(gt=0)] = 30.0
    cooldown_s: Annotated[float, Field(gt=0)] = 30.0


class RateLimitConfig(_Section):
    """Limits per (tenant, caller, model); unset values are unlimited."""

    requests_per_minute: Annotated[int, Field(ge=1)] | None = None
    tokens_per_minute: Annotated[int, Field(ge=1)] | None = None
    burst_requests: Annotated[int, Field(ge=0)] | None = None
    burst_tokens: Annotated[int, Field(ge=0)] | None = None
    max_wait_s: Annotated[float, Field(ge=0)] = 0.0
    """Wait up to this long for capacity before refusing with 429."""


class PriceConfig(_Section):
    """List price in USD per million tokens."""

    input_per_mtok: Annotated[float, Field(ge=0)] = 0.0
    output_per_mtok: Annotated[float, Field(ge=0)] = 0.0


class GatewayConfig(_Section):
    """How calls to one configured model are routed, cached, retried, limited and priced."""

    deployments: list[DeploymentConfig] = Field(default_factory=list)
    strategy: Literal["weighted", "round_robin", "least_in_flight", "lowest_latency"] = "weighted"
    fallbacks: list[str] = Field(default_factory=list)
    """Configured models to try, in order, when every deployment fails."""
    context_fallbacks: list[str] = Field(default_factory=list)
    """Configured models (larger windows) to try when the prompt is too long."""
    cache: CachePolicyConfig = Field(default_factory=CachePolicyConfig)
    retry: RetryConfig | None = Field(default_factory=RetryConfig)
    """None: no retries."""
    breaker: BreakerConfig | None = Field(default_factory=BreakerConfig)
    """None: no circuit breaker."""
    rate_limit: RateLimitConfig | None = None
    price: PriceConfig | None = None


class CacheSettings(_Section):
    """The response cache shared by every model: L1 in process, L2 on disk or in Redis."""

    l2: Literal["disk", "redis", "none"] = "disk"
    """`disk` (embedded default, a SQLite file), `redis` (shared by instances), `none`."""
    redis_url: str | None = None
    """Redis for `l2: redis` (default: `server.redis_url`)."""
    disk_path: str | None = None
    """SQLite file for `l2: disk` (default: `<server.data_dir>/cache.db`)."""
    max_entries: Annotated[int, Field(ge=1)] = 10_000
    """L1 size in entries."""
    max_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024
    """L1 size in bytes (approximate)."""
