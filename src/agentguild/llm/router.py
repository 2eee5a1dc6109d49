"""Router: several deployments behind one model name, load balancing and fallbacks.

```python
router = Router(
    [Deployment(RetryingModel(east), weight=2), Deployment(RetryingModel(west))],
    strategy="least_in_flight",
    fallbacks=[RetryingModel(other_model)],
    context_fallbacks=[long_context_model],
    name="qwen-plus",
)
```
"""

from __future__ import annotations

import logging
import random as _random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from ..errors import BadRequestError, CircuitOpenError, ConfigError, ContextLengthError, ModelError
from ._breaker import BreakerPermit, BreakerState, CircuitBreaker, closing_stream
from .base import ChatChunk, ChatModel, ChatRequest, ChatResponse

logger = logging.getLogger("agentguild.llm.router")

Strategy: TypeAlias = Literal["weighted", "round_robin", "least_in_flight", "lowest_latency"]
"""How a router picks among healthy deployments (see `Router`)."""

STRATEGIES: tuple[Strategy, ...] = ("weighted", "round_robin", "least_in_flight", "lowest_latency")


@dataclass(frozen=True, slots=True)
class Deployment:
    """One model endpoint serving a router's model name."""

    model: ChatModel
    """The client (usually wrapped in `RetryingModel`) that serves calls."""
    weight: float = 1.0
    """Relative share of calls under the 'weighted' strategy."""
    breaker: CircuitBreaker | None = None
    """Skip this deployment while its breaker is open (None: never skip)."""
    name: str | None = None
    """Label for logs and stats (default: the model's name)."""

    @property
    def label(self) -> str:
        """The deployment's name in logs and stats."""
        return self.name or self.model.name


@dataclass(frozen=True, slots=True)
class DeploymentStats:
    """A snapshot of one deployment's routing state."""

    name: str
    weight: float
    in_flight: int
    latency_ewma_s: float | None
    """Exponentially weighted mean latency (time to first chunk for streams); None
    before the first success."""
    calls: int
    failures: int
    breaker_state: BreakerState | None


class _Slot:
    """A deployment and the router's live state for it."""

    __slots__ = ("calls", "deployment", "failures", "in_flight", "index", "latency")

    def __init__(self, index: int, deployment: Deployment) -> None:
        self.index = index
        self.deployment = deployment
        self.in_flight = 0
        self.latency: float | None = None
        self.calls = 0
        self.failures = 0

    def available(self) -> bool:
        breaker = self.deployment.breaker
        return breaker is None or breaker.allows_request()


class Router:
    """A `ChatModel` spreading calls over deployments, with failover and fallbacks.

    Each call goes to a healthy deployment picked by `strategy`: 'weighted' (random in
    proportion to `weight`; the default), 'round_robin', 'least_in_flight' (fewest calls in
    progress) or 'lowest_latency' (lowest EWMA latency; deployments within
    `latency_buffer` of the best share the load, unmeasured ones are tried first).
    Deployments whose breaker is open are skipped.

    When a deployment fails with a model error other than a bad request, the call moves
    to another healthy deployment (at most `max_deployment_attempts` in all), then to
    `fallbacks` in order. A `ContextLengthError` skips the remaining deployments and
    fallbacks and goes to `context_fallbacks` only (larger-context models). A bad request
    is raised at once: no other model would accept it either. A stream fails over only
    before its first chunk reached the caller. When everything fails, the last error is
    raised (`CircuitOpenError` if every deployment was skipped and nothing else was tried).
    """

    def __init__(
        self,
        deployments: Sequence[Deployment],
        *,
        strategy: Strategy = "weighted",
        fallbacks: Sequence[ChatModel] = (),
        context_fallbacks: Sequence[ChatModel] = (),
        name: str = "router",
        max_deployment_attempts: int | None = None,
        latency_alpha: float = 0.3,
        latency_buffer: float = 0.1,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not deployments:
            raise ConfigError(f"router {name!r} needs at least one deployment")
        if strategy not in STRATEGIES:
            raise ConfigError(
                f"router {name!r}: unknown strategy {strategy!r}; choose one of "
                + ", ".join(STRATEGIES)
            )
        bad = [d.label for d in deployments if not d.weight > 0]
        if bad:
            raise ConfigError(f"router {name!r}: deployment weights must be > 0 ({bad})")
        if not 0 < latency_alpha <= 1:
            raise ConfigError(f"router {name!r}: latency_alpha must be in (0, 1]")
        self.strategy: Strategy = strategy
        self.fallbacks = tuple(fallbacks)
        self.context_fallbacks = tuple(context_fallbacks)
        self.max_deployment_attempts = max_deployment_attempts or len(deployments)
        self.latency_alpha = latency_alpha
        self.latency_buffer = latency_buffer
        self._name = name
        self._random = random
        self._clock = clock
        self._slots = [_Slot(index, d) for index, d in enumerate(deployments)]
        self._next_index = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def deployments(self) -> tuple[Deployment, ...]:
        """The deployments, in the order given."""
        return tuple(slot.deployment for slot in self._slots)

    def stats(self) -> list[DeploymentStats]:
        """A snapshot of every deployment's load, latency, counts and breaker state."""
        return [
            DeploymentStats(
                name=slot.deployment.label,
                weight=slot.deployment.weight,
                in_flight=slot.in_flight,
                latency_ewma_s=slot.latency,
                calls=slot.calls,
                failures=slot.failures,
                breaker_state=None
                if slot.deployment.breaker is None
                else slot.deployment.breaker.state,
            )
            for slot in self._slots
        ]

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer via a healthy deployment, failing over as the class describes."""
        call = _RoutedCall(self)
        while (target := call.next_target()) is not None:
            try:
                response = await target.model.complete(request)
            except BaseException as error:
                target.finish(error)
                if isinstance(error, ModelError) and call.fail_over(target, error):
                    continue
                raise
            target.finish(None)
            return response
        raise call.exhausted()

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream via a healthy deployment, failing over only before the first chunk."""
        call = _RoutedCall(self)
        while (target := call.next_target()) is not None:
            delivered = False
            try:
                async with closing_stream(target.model.stream(request)) as chunks:
                    async for chunk in chunks:
                        if not delivered:
                            delivered = True
                            target.first_chunk()
                        yield chunk
            except BaseException as error:
                target.finish(error)
                if (
                    not delivered
                    and isinstance(error, ModelError)
                    and call.fail_over(target, error)
                ):
                    continue
                raise
            target.finish(None)
            return
        raise call.exhausted()

    # ---- picking ----------------------------------------------------------------------

    def pick(self, exclude: frozenset[int] | set[int] = frozenset()) -> Deployment | None:
        """The deployment the strategy would pick now (None if none is available)."""
        slot = self._pick(exclude)
        return None if slot is None else slot.deployment

    def _pick(self, exclude: frozenset[int] | set[int]) -> _Slot | None:
        candidates = [s for s in self._slots if s.index not in exclude and s.available()]
        if not candidates:
            return None
        if len(candidates) == 1:
            chosen = candidates[0]
        elif self.strategy == "round_robin":
            chosen = self._round_robin(candidates)
        elif self.strategy == "least_in_flight":
            fewest = min(s.in_flight for s in candidates)
            chosen = self._any([s for s in candidates if s.in_flight == fewest])
        elif self.strategy == "lowest_latency":
            chosen = self._lowest_latency(candidates)
        else:
            chosen = self._weighted(candidates)
        if self.strategy == "round_robin":
            self._next_index = chosen.index + 1
        return chosen

    def _weighted(self, candidates: list[_Slot]) -> _Slot:
        point = self._random() * sum(s.deployment.weight for s in candidates)
        for slot in candidates:
            point -= slot.deployment.weight
            if point < 0:
                return slot
        return candidates[-1]

    def _round_robin(self, candidates: list[_Slot]) -> _Slot:
        count = len(self._slots)
        allowed = {s.index for s in candidates}
        for offset in range(count):
            index = (self._next_index + offset) % count
            if index in allowed:
                return self._slots[index]
        return candidates[0]

    def _lowest_latency(self, candidates: list[_Slot]) -> _Slot:
        unmeasured = [s for s in candidates if s.latency is None]
        if unmeasured:
            return self._any(unmeasured)
        best = min(s.latency or 0.0 for s in candidates)
        cutoff = best * (1 + self.latency_buffer)
        return self._any([s for s in candidates if (s.latency or 0.0) <= cutoff])

    def _any(self, slots: list[_Slot]) -> _Slot:
        return slots[min(int(self._random() * len(slots)), len(slots) - 1)]

    def _observe_latency(self, slot: _Slot, seconds: float) -> None:
        previous = slot.latency
        alpha = self.latency_alpha
        slot.latency = seconds if previous is None else alpha * seconds + (1 - alpha) * previous


class _Target:
    """One attempt of a routed call: a deployment (with breaker and stats) or a fallback."""

    __slots__ = ("_latency_seen", "_permit", "_router", "_slot", "_started", "model")

    def __init__(self, router: Router, model: ChatModel, slot: _Slot | None) -> None:
        self._router = router
        self.model = model
        self._slot = slot
        self._permit: BreakerPermit | None = None
        self._latency_seen = False
        if slot is not None:
            breaker = slot.deployment.breaker
            if breaker is not None:
                self._permit = breaker.acquire()
            slot.in_flight += 1
            slot.calls += 1
        self._started = router._clock()

    @property
    def label(self) -> str:
        return self.model.name if self._slot is None else self._slot.deployment.label

    @property
    def is_deployment(self) -> bool:
        return self._slot is not None

    def first_chunk(self) -> None:
        """A stream delivered its first chunk: that is its latency."""
        if self._slot is not None and not self._latency_seen:
            self._latency_seen = True
            self._router._observe_latency(self._slot, self._router._clock() - self._started)

    def finish(self, error: BaseException | None) -> None:
        """Account for the attempt's outcome (None: success)."""
        slot = self._slot
        if slot is None:
            return
        slot.in_flight -= 1
        breaker = slot.deployment.breaker
        if breaker is not None and self._permit is not None:
            breaker.record(self._permit, error)
        if error is None:
            self.first_chunk()
        elif isinstance(error, ModelError):
            slot.failures += 1


class _RoutedCall:
    """The state of one routed call: which targets were tried, what failed, what is next."""

    __slots__ = ("_attempts", "_errors", "_index", "_phase", "_router", "_tried")

    def __init__(self, router: Router) -> None:
        self._router = router
        self._tried: set[int] = set()
        self._attempts = 0
        self._phase: Literal["deployments", "fallbacks", "context"] = "deployments"
        self._index = 0
        self._errors: list[ModelError] = []

    def next_target(self) -> _Target | None:
        router = self._router
        if self._phase == "deployments":
            if self._attempts < router.max_deployment_attempts:
                slot = router._pick(self._tried)
                if slot is not None:
                    self._tried.add(slot.index)
                    self._attempts += 1
                    return _Target(router, slot.deployment.model, slot)
            self._phase, self._index = "fallbacks", 0
        chain = router.fallbacks if self._phase == "fallbacks" else router.context_fallbacks
        if self._index < len(chain):
            self._index += 1
            return _Target(router, chain[self._index - 1], None)
        return None

    def fail_over(self, target: _Target, error: ModelError) -> bool:
        """Record `error`; whether the call may go on to another target."""
        if isinstance(error, ContextLengthError):
            if self._phase != "context":
                if not self._router.context_fallbacks:
                    return False
                self._phase, self._index = "context", 0
        elif isinstance(error, BadRequestError):
            return False
        self._errors.append(error)
        # A refusal by an open breaker is routine while it is open; real failures warn.
        log = logger.info if isinstance(error, CircuitOpenError) else logger.warning
        log(
            "llm.router.failover",
            extra={
                "router": self._router.name,
                "target": target.label,
                "error_type": type(error).__name__,
                "phase": self._phase,
            },
        )
        return True

    def exhausted(self) -> ModelError:
        """The error to raise when no target is left."""
        if self._errors:
            return self._errors[-1]
        return CircuitOpenError(
            f"router {self._router.name!r}: every deployment's circuit breaker is open and "
            "no fallback is configured; retry later or add fallbacks"
        )
