"""How a wrapper outside the cache learns that a call was answered without an upstream call.

`MeteredModel` opens a `CacheHitProbe` around each call; `CachedModel` marks it on a hit.
The probe travels in a context variable, so it reaches the cache through any wrappers in
between (router, retry...), including ones that run the call in a task of their own.
"""

from __future__ import annotations

from contextvars import ContextVar


class CacheHitProbe:
    """Set to `hit=True` by the cache when it answers the call it was opened around."""

    __slots__ = ("hit",)

    def __init__(self) -> None:
        self.hit = False


current_probe: ContextVar[CacheHitProbe | None] = ContextVar(
    "agentguild_cache_hit_probe", default=None
)


def record_cache_hit() -> None:
    """Mark the current call (if anyone is watching) as answered from the cache."""
    probe = current_probe.get()
    if probe is not None:
        probe.hit = True
