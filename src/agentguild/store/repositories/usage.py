"""Token usage and cost records, and their totals."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, func, select

from ..models import UsageRecord, utcnow
from ..views import UsageTotals
from ._base import TenantRepo


class UsageRepo(TenantRepo):
    """The tenant's usage. On hot paths prefer `UsageWriter`, which batches inserts."""

    async def record(
        self,
        user_id: str | None,
        api_key_id: str | None,
        run_id: str | None,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cost_usd: float = 0.0,
        cached: bool = False,
    ) -> None:
        """Store one usage record in this transaction."""
        self._session.add(
            UsageRecord(
                tenant_id=self._tenant_id,
                user_id=user_id,
                api_key_id=api_key_id,
                run_id=run_id,
                model=model,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost_usd=cost_usd,
                cached=cached,
                created_at=utcnow(),
            )
        )
        await self._session.flush()

    async def summary(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        user_id: str | None = None,
        api_key_id: str | None = None,
    ) -> list[UsageTotals]:
        """Totals per model over `since <= created_at < until` (until: now), by model name."""
        query = (
            select(
                UsageRecord.model,
                func.count(),
                func.coalesce(func.sum(UsageRecord.prompt_tokens), 0),
                func.coalesce(func.sum(UsageRecord.completion_tokens), 0),
                func.coalesce(func.sum(UsageRecord.cost_usd), 0.0),
                func.coalesce(func.sum(case((UsageRecord.cached, 1), else_=0)), 0),
            )
            .where(
                UsageRecord.tenant_id == self._tenant_id,
                UsageRecord.created_at >= since,
                UsageRecord.created_at < (until or utcnow()),
            )
            .group_by(UsageRecord.model)
            .order_by(UsageRecord.model)
        )
        if user_id is not None:
            query = query.where(UsageRecord.user_id == user_id)
        if api_key_id is not None:
            query = query.where(UsageRecord.api_key_id == api_key_id)
        rows = (await self._session.execute(query)).all()
        return [
            UsageTotals(
                model=model,
                requests=int(requests),
                prompt_tokens=int(prompt),
                completion_tokens=int(completion),
                cost_usd=float(cost),
                cached_requests=int(cached),
            )
            for model, requests, prompt, completion, cost, cached in rows
        ]
