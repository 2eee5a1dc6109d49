"""Per-tenant limits: active runs at once, and tokens per calendar month.

Defaults come from `RunLimits`; a tenant's `settings` (the `tenants.settings` JSON) may
override them with `max_active_runs` and `max_tokens_per_month`. Both the tenant's
limits and its month-to-date token use are read at most once per `ttl_s` per tenant
(concurrent misses share one read), so checking costs no database access on hot paths.
The token quota is therefore soft: usage recorded in the last `ttl_s` (or not yet written
by the batched usage writer) is counted late.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from ..errors import AgentguildError
from ..security import Principal
from ..store.db import Database


class RunLimitError(AgentguildError):
    """The tenant already has as many active runs as it may; retry when one finishes."""


class QuotaExceededError(AgentguildError):
    """The tenant has used its tokens for this month."""


@dataclass(frozen=True, slots=True)
class RunLimits:
    """Limits of one tenant (the defaults, or a tenant's own)."""

    max_active_runs: int = 64
    """Runs of one tenant queued or running at once, counted over every instance and
    queue worker (more: `RunLimitError`; concurrent starts on different instances may
    overshoot it by a few)."""
    max_tokens_per_month: int | None = None
    """Prompt plus completion tokens a tenant may use per calendar month (UTC); None: no cap."""

    def check_active(self, active: int) -> None:
        """Raise `RunLimitError` if `active` runs (queued or running, besides the one about
        to start) leave no room for one more."""
        if active >= self.max_active_runs:
            raise RunLimitError(
                f"this tenant already has {active} active runs (limit {self.max_active_runs}); "
                "wait for one to finish or cancel one"
            )


@dataclass(frozen=True, slots=True)
class _Entry:
    limits: RunLimits
    used_tokens: int
    read_at: float


class TenantLimits:
    """Each tenant's limits and month-to-date token use, cached for `ttl_s`."""

    def __init__(self, db: Database, defaults: RunLimits | None = None, *, ttl_s: float = 30.0):
        self.db = db
        self.defaults = defaults or RunLimits()
        self.ttl_s = ttl_s
        self._entries: dict[str, _Entry] = {}
        self._reading: dict[str, asyncio.Future[_Entry]] = {}

    async def limits(self, principal: Principal) -> RunLimits:
        """The limits that apply to `principal`'s tenant."""
        return (await self._entry(principal)).limits

    async def check_tokens(self, principal: Principal) -> None:
        """Raise `QuotaExceededError` if the tenant has used this month's tokens."""
        entry = await self._entry(principal)
        cap = entry.limits.max_tokens_per_month
        if cap is not None and entry.used_tokens >= cap:
            raise QuotaExceededError(
                f"this tenant has used {entry.used_tokens} of its {cap} tokens this month; "
                "raise `max_tokens_per_month` or wait for next month"
            )

    def forget(self, tenant_id: str) -> None:
        """Drop a tenant's cached limits (after changing its settings)."""
        self._entries.pop(tenant_id, None)

    async def _entry(self, principal: Principal) -> _Entry:
        tenant_id = principal.tenant_id
        entry = self._entries.get(tenant_id)
        if entry is not None and time.monotonic() - entry.read_at < self.ttl_s:
            return entry
        pending = self._reading.get(tenant_id)
        if pending is None:
            pending = asyncio.ensure_future(self._read(principal))
            self._reading[tenant_id] = pending
            pending.add_done_callback(lambda _: self._reading.pop(tenant_id, None))
        return await asyncio.shield(pending)

    async def _read(self, principal: Principal) -> _Entry:
        async with self.db.system() as system:
            tenant = await system.get_tenant(principal.tenant_id)
        settings = dict(tenant.settings or {}) if tenant is not None else {}
        limits = RunLimits(
            max_active_runs=int(settings.get("max_active_runs", self.defaults.max_active_runs)),
            max_tokens_per_month=_optional_int(
                settings.get("max_tokens_per_month", self.defaults.max_tokens_per_month)
            ),
        )
        used = 0
        if limits.max_tokens_per_month is not None:
            month = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            async with self.db.repos(principal) as repos:
                totals = await repos.usage.summary(month)
            used = sum(total.total_tokens for total in totals)
        entry = _Entry(limits, used, time.monotonic())
        self._entries[principal.tenant_id] = entry
        return entry


def _optional_int(value: object) -> int | None:
    return None if value is None else int(str(value))
