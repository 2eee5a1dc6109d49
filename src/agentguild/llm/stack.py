"""The gateway stack: every configured model wrapped as its `gateway` section says.

For one configured model the stack is plain composition of the wrappers::

    MeteredModel(                         # usage and cost of every call
      CachedModel(                        # tenant-scoped cache; single-flight
        RateLimitedModel(                 # per (tenant, caller, model); cache hits are free
          Router([                        # deployments, strategy, breakers, fallbacks
            Deployment(RetryingModel(client), weight, CircuitBreaker()), ...
          ], fallbacks=[<core of another model>, ...]))))

Layers a model's configuration leaves out are left out of its stack. One `Gateway` holds
what the stacks share: the response cache, the rate limiter and the usage sink.
"""

from __future__ import annotations

from pathlib import Path

from .._gateway_settings import GatewayConfig
from ..config import ModelConfig, OpenAIModelConfig, Settings
from ..errors import ConfigError
from .base import ChatModel
from .cache import CachedModel, DiskStore, MemoryStore, RedisStore, ResponseCache
from .metering import MeteredModel, MeterSink, Price, UsageAggregator
from .ratelimit import InMemoryLimiter, RateLimit, RateLimitedModel, RateLimiter
from .registry import build_model
from .resilience import CircuitBreaker, RetryingModel
from .router import Deployment, Router


class Gateway:
    """Builds, once each, the wrapped model of every configured name.

    `model(name)` is what agents should call. `usage` receives one record per call (a
    `UsageAggregator` unless another sink is given). Call `aclose()` at shutdown.
    """

    def __init__(self, settings: Settings, *, usage: MeterSink | None = None) -> None:
        self.settings = settings
        self.cache = _response_cache(settings)
        self.limiter = _limiter(settings)
        self.usage: MeterSink = usage if usage is not None else UsageAggregator()
        self._models: dict[str, ChatModel] = {}
        self._cores: dict[str, ChatModel] = {}
        self._clients: list[ChatModel] = []

    def model(self, name: str) -> ChatModel:
        """The configured model `name` with its whole gateway stack."""
        model = self._models.get(name)
        if model is None:
            model = self._models[name] = self._build(name)
        return model

    async def aclose(self) -> None:
        """Close the clients' connection pools, the cache stores and the limiter."""
        for client in self._clients:
            aclose = getattr(client, "aclose", None)
            if aclose is not None:
                await aclose()
        await self.cache.aclose()
        aclose_limiter = getattr(self.limiter, "aclose", None)
        if aclose_limiter is not None:
            await aclose_limiter()

    def _build(self, name: str) -> ChatModel:
        config = self._config(name)
        gateway = config.gateway
        model = self._core(name)
        if gateway.rate_limit is not None:
            limits = gateway.rate_limit
            model = RateLimitedModel(
                model,
                self.limiter,
                RateLimit(
                    requests_per_minute=limits.requests_per_minute,
                    tokens_per_minute=limits.tokens_per_minute,
                    burst_requests=limits.burst_requests,
                    burst_tokens=limits.burst_tokens,
                ),
                max_wait_s=limits.max_wait_s,
                model=name,
            )
        if gateway.cache.policy != "off":
            model = CachedModel(
                model,
                cache=self.cache,
                policy=gateway.cache.policy,
                ttl_s=gateway.cache.ttl_s,
                identity=_identity(name, config),
            )
        price = gateway.price
        return MeteredModel(
            model,
            prices=Price(price.input_per_mtok, price.output_per_mtok) if price else None,
            sink=self.usage,
        )

    def _core(self, name: str) -> ChatModel:
        """Deployments, retries, breakers and fallbacks: what fallbacks of others reuse."""
        core = self._cores.get(name)
        if core is not None:
            return core
        config = self._config(name)
        gateway = config.gateway
        deployments = [
            self._deployment(name, index, client_config, weight, gateway)
            for index, (client_config, weight) in enumerate(_endpoints(config))
        ]
        fallbacks = [self._core(other) for other in gateway.fallbacks]
        context_fallbacks = [self._core(other) for other in gateway.context_fallbacks]
        if (
            len(deployments) == 1
            and deployments[0].breaker is None
            and not (fallbacks or context_fallbacks)
        ):
            core = deployments[0].model
        else:
            core = Router(
                deployments,
                strategy=gateway.strategy,
                fallbacks=fallbacks,
                context_fallbacks=context_fallbacks,
                name=name,
            )
        self._cores[name] = core
        return core

    def _deployment(
        self,
        name: str,
        index: int,
        config: ModelConfig,
        weight: float,
        gateway: GatewayConfig,
    ) -> Deployment:
        label = name if index == 0 else f"{name}#{index}"
        client = build_model(config, name=name)
        self._clients.append(client)
        model: ChatModel = client
        if gateway.retry is not None:
            retry = gateway.retry
            model = RetryingModel(
                client,
                max_attempts=retry.max_attempts,
                base_delay_s=retry.base_delay_s,
                max_delay_s=retry.max_delay_s,
                max_retry_after_s=retry.max_retry_after_s,
            )
        breaker = None
        if gateway.breaker is not None:
            options = gateway.breaker
            breaker = CircuitBreaker(
                failure_rate=options.failure_rate,
                min_requests=options.min_requests,
                window_s=options.window_s,
                cooldown_s=options.cooldown_s,
                name=label,
            )
        return Deployment(model, weight=weight, breaker=breaker, name=label)

    def _config(self, name: str) -> ModelConfig:
        config = self.settings.models.get(name)
        if config is None:
            configured = ", ".join(self.settings.models)
            raise ConfigError(f"model {name!r} is not configured; configured models: {configured}")
        return config


def _endpoints(config: ModelConfig) -> list[tuple[ModelConfig, float]]:
    """The model's own endpoint and its extra deployments, each as a client config."""
    endpoints: list[tuple[ModelConfig, float]] = [(config, 1.0)]
    if not config.gateway.deployments:
        return endpoints
    if not isinstance(config, OpenAIModelConfig):
        raise ConfigError(
            f"extra deployments need an OpenAI-compatible model (provider: openai), "
            f"not provider {config.provider!r}"
        )
    for deployment in config.gateway.deployments:
        update: dict[str, object] = {"base_url": deployment.base_url.rstrip("/")}
        if deployment.model is not None:
            update["model"] = deployment.model
        if deployment.api_key_env is not None or deployment.api_key is not None:
            update["api_key_env"] = deployment.api_key_env
            update["api_key"] = deployment.api_key
        endpoints.append((config.model_copy(update=update), deployment.weight))
    return endpoints


def _identity(name: str, config: ModelConfig) -> str:
    """What distinguishes this model's answers in cache keys: provider, endpoint, model."""
    if isinstance(config, OpenAIModelConfig):
        return f"openai|{config.base_url}|{config.model}"
    if config.provider == "local":
        return f"local|{config.model_path or 'bundled'}|seed={config.seed}"
    return f"{config.provider}|{name}"


def _response_cache(settings: Settings) -> ResponseCache:
    options = settings.cache
    l1 = MemoryStore(max_entries=options.max_entries, max_bytes=options.max_bytes)
    if options.l2 == "none":
        return ResponseCache(l1)
    if options.l2 == "redis":
        url = options.redis_url or settings.server.redis_url
        if url is None:
            raise ConfigError(
                "cache.l2 is 'redis' but neither cache.redis_url nor server.redis_url is set"
            )
        return ResponseCache(l1, RedisStore(url))
    path = options.disk_path or str(Path(settings.server.data_dir) / "cache.db")
    return ResponseCache(l1, DiskStore(path))


def _limiter(settings: Settings) -> RateLimiter:
    url = settings.server.redis_url
    if url is None:
        return InMemoryLimiter()
    from ._ratelimit_redis import RedisLimiter  # needs the `redis` extra

    return RedisLimiter.from_url(url, fallback=InMemoryLimiter())
