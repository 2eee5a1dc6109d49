"""Runs: one execution of an agent on a conversation, and its status."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeAlias, get_args

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import NotFoundError
from ..ids import new_id
from ..models import Conversation, Run, ToolCallRecord, utcnow
from ..views import Page
from ._base import TenantRepo, newest_first, page_of

RunStatus: TypeAlias = Literal[
    "queued", "running", "completed", "failed", "cancelled", "interrupted"
]
RunMode: TypeAlias = Literal["stream", "wait", "background"]
RUN_STATUSES: frozenset[str] = frozenset(get_args(RunStatus))
RUN_MODES: frozenset[str] = frozenset(get_args(RunMode))
FINISHED_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled", "interrupted"})
INTERRUPTED_ERROR = "the server stopped while the run was in progress"


class RunRepo(TenantRepo):
    """The tenant's runs."""

    async def create(
        self,
        conversation_id: str,
        agent_id: str | None,
        agent_version: int | None,
        user_id: str | None,
        mode: RunMode | str,
        status: RunStatus | str = "queued",
    ) -> Run:
        """A new run; NotFoundError if the conversation does not exist in this tenant."""
        _check_status(status)
        if mode not in RUN_MODES:
            raise ValueError(f"unknown run mode {mode!r}; one of: {', '.join(sorted(RUN_MODES))}")
        found = await self._session.scalar(
            select(Conversation.id).where(
                Conversation.tenant_id == self._tenant_id, Conversation.id == conversation_id
            )
        )
        if found is None:
            raise NotFoundError(f"conversation {conversation_id!r} not found")
        now = utcnow()
        run = Run(
            id=new_id("run"),
            tenant_id=self._tenant_id,
            conversation_id=conversation_id,
            agent_id=agent_id,
            agent_version=agent_version,
            user_id=user_id,
            status=status,
            mode=mode,
            prompt_tokens=0,
            completion_tokens=0,
            created_at=now,
            started_at=now if status == "running" else None,
        )
        self._session.add(run)
        await self._session.flush()
        return self._detach(run)

    async def get(self, run_id: str) -> Run | None:
        """The run, or None."""
        return await self._one(
            select(Run).where(Run.tenant_id == self._tenant_id, Run.id == run_id)
        )

    async def list(
        self,
        conversation_id: str | None = None,
        status: RunStatus | str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Run]:
        """Runs newest first, optionally of one conversation and/or in one status."""
        query = select(Run).where(Run.tenant_id == self._tenant_id)
        if conversation_id is not None:
            query = query.where(Run.conversation_id == conversation_id)
        if status is not None:
            query = query.where(Run.status == status)
        query = newest_first(query, Run.created_at, Run.id, cursor, limit)
        return page_of(await self._all(query), limit)

    async def set_status(
        self,
        run_id: str,
        status: RunStatus | str,
        *,
        error: str | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
    ) -> Run | None:
        """Move the run to `status`; None if not found.

        `started_at` defaults to now when entering `running`; `finished_at` to now when
        entering a finished status (completed, failed, cancelled, interrupted).
        """
        _check_status(status)
        now = utcnow()
        values: dict[str, Any] = {"status": status}
        if error is not None:
            values["error"] = error
        if started_at is not None or status == "running":
            values["started_at"] = started_at or now
        if finished_at is not None or status in FINISHED_STATUSES:
            values["finished_at"] = finished_at or now
        found = await self._session.scalar(
            update(Run)
            .where(Run.tenant_id == self._tenant_id, Run.id == run_id)
            .values(**values)
            .returning(Run.id)
            .execution_options(synchronize_session=False)
        )
        return None if found is None else await self.get(run_id)

    async def add_usage(self, run_id: str, prompt_tokens: int, completion_tokens: int) -> bool:
        """Add tokens to the run's totals (atomic increment); False if not found."""
        found = await self._session.scalar(
            update(Run)
            .where(Run.tenant_id == self._tenant_id, Run.id == run_id)
            .values(
                prompt_tokens=Run.prompt_tokens + prompt_tokens,
                completion_tokens=Run.completion_tokens + completion_tokens,
            )
            .returning(Run.id)
            .execution_options(synchronize_session=False)
        )
        return found is not None

    async def mark_interrupted_running(self) -> int:
        """Mark this tenant's `running` runs (and their open tool calls) `interrupted`."""
        return await mark_interrupted(self._session, Run.tenant_id == self._tenant_id)


async def mark_interrupted(session: AsyncSession, scope: ColumnElement[bool] | None = None) -> int:
    """Mark `running` runs within `scope` as interrupted; how many were."""
    now = utcnow()
    runs = update(Run).where(Run.status == "running")
    if scope is not None:
        runs = runs.where(scope)
    ids = (
        await session.scalars(
            runs.values(status="interrupted", error=INTERRUPTED_ERROR, finished_at=now)
            .returning(Run.id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    if ids:
        await session.execute(
            update(ToolCallRecord)
            .where(ToolCallRecord.run_id.in_(ids), ToolCallRecord.status == "running")
            .values(status="interrupted", error=INTERRUPTED_ERROR, finished_at=now)
            .execution_options(synchronize_session=False)
        )
    return len(ids)


def _check_status(status: str) -> None:
    if status not in RUN_STATUSES:
        raise ValueError(
            f"unknown run status {status!r}; one of: {', '.join(sorted(RUN_STATUSES))}"
        )
