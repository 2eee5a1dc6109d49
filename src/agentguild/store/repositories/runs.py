"""Runs: one execution of an agent on a conversation, and its status."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any, Literal, TypeAlias, get_args

from sqlalchemy import ColumnElement, Select, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import NotFoundError, NotRunOwnerError
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
ACTIVE_STATUSES = ("queued", "running")
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
        *,
        owner: str | None = None,
        pending_input: list[Any] | None = None,
    ) -> Run:
        """A new run; NotFoundError if the conversation does not exist in this tenant.

        `owner` is the instance that will execute it; `pending_input` the input messages
        (OpenAI format) to add to the conversation when its turn comes."""
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
            owner=owner,
            pending_input=pending_input,
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
        entering a finished status (completed, failed, cancelled, interrupted). Completed,
        failed and cancelled runs drop their pending input (a run that ended while waiting
        for its turn never adds it); an interrupted one keeps it, since a queue worker may
        resume it.
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
        if status in FINISHED_STATUSES and status != "interrupted":
            values["pending_input"] = None
        if status == "interrupted":
            values["owner"] = None  # nobody executes it now (a queue worker may claim it)
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

    async def active(self, conversation_id: str) -> builtins.list[Run]:
        """The conversation's queued and running runs, oldest first."""
        return await self._all(
            select(Run)
            .where(
                Run.tenant_id == self._tenant_id,
                Run.conversation_id == conversation_id,
                Run.status.in_(ACTIVE_STATUSES),
            )
            .order_by(Run.created_at, Run.id)
        )

    async def ahead_of(self, run: Run) -> builtins.list[Run]:
        """The active runs of `run`'s conversation whose turn comes before its own: those
        that have begun (their input is in the conversation), and waiting ones created
        before it; oldest first."""
        earlier = or_(
            Run.created_at < run.created_at,
            and_(Run.created_at == run.created_at, Run.id < run.id),
        )
        return await self._all(
            select(Run)
            .where(
                Run.tenant_id == self._tenant_id,
                Run.conversation_id == run.conversation_id,
                Run.status.in_(ACTIVE_STATUSES),
                Run.id != run.id,
                or_(Run.pending_input.is_(None), earlier),
            )
            .order_by(Run.created_at, Run.id)
        )

    async def active_by_conversation(self) -> builtins.list[tuple[str, str]]:
        """`(run id, conversation id)` of the tenant's queued and running runs (on every
        instance), oldest first: their number is what the active-run limit counts."""
        rows = await self._session.execute(
            select(Run.id, Run.conversation_id)
            .where(Run.tenant_id == self._tenant_id, Run.status.in_(ACTIVE_STATUSES))
            .order_by(Run.created_at, Run.id)
        )
        return [(run_id, conversation_id) for run_id, conversation_id in rows.all()]

    async def take_pending_input(self, run_id: str) -> builtins.list[Any]:
        """The run's pending input messages, cleared (empty if it has none)."""
        run = await self.get(run_id)
        if run is None or run.pending_input is None:
            return []
        await self._session.execute(
            update(Run)
            .where(Run.tenant_id == self._tenant_id, Run.id == run_id)
            .values(pending_input=None)
            .execution_options(synchronize_session=False)
        )
        return list(run.pending_input)

    async def claim(self, run_id: str, owner: str) -> Run | None:
        """Make `owner` the run's executor if it is still to be finished: queued, running,
        or interrupted by a shutdown (a queue worker resumes it); the run, or None if it
        ended otherwise (or does not exist)."""
        found = await self._session.scalar(
            update(Run)
            .where(
                Run.tenant_id == self._tenant_id,
                Run.id == run_id,
                Run.status.in_((*ACTIVE_STATUSES, "interrupted")),
            )
            .values(owner=owner)
            .returning(Run.id)
            .execution_options(synchronize_session=False)
        )
        return None if found is None else await self.get(run_id)

    async def fence(self, run_id: str, owner: str) -> None:
        """Check, in this transaction, that `owner` still executes the run, and hold the
        run's row until commit (PostgreSQL row lock; the write lock on SQLite), so nobody
        takes the run over before the transaction's writes land. NotRunOwnerError if
        someone did: its owner was thought dead and the run was recovered (which clears
        the owner) or claimed by another process. Call it after any conversation write in
        the transaction (rows are locked conversation first, then run), and before any
        write that clears the owner (`set_status("interrupted")`)."""
        found = await self._session.scalar(
            update(Run)
            .where(Run.tenant_id == self._tenant_id, Run.id == run_id, Run.owner == owner)
            .values(owner=owner)
            .returning(Run.id)
            .execution_options(synchronize_session=False)
        )
        if found is None:
            raise NotRunOwnerError(f"run {run_id!r} is no longer executed by {owner!r}")

    async def cancel_unowned(self, run_id: str, live_owners: Select[str]) -> Run | None:
        """Mark the run `cancelled` if it is active and no live instance executes it (its
        owner is none, or not among `live_owners`); the run if it was."""
        found = await self._session.scalar(
            update(Run)
            .where(
                Run.tenant_id == self._tenant_id,
                Run.id == run_id,
                Run.status.in_(ACTIVE_STATUSES),
                or_(Run.owner.is_(None), Run.owner.not_in(live_owners)),
            )
            .values(status="cancelled", finished_at=utcnow(), pending_input=None)
            .returning(Run.id)
            .execution_options(synchronize_session=False)
        )
        return None if found is None else await self.get(run_id)

    async def mark_interrupted_running(self) -> int:
        """Mark this tenant's `running` runs (and their open tool calls) `interrupted`."""
        return await mark_interrupted(self._session, Run.tenant_id == self._tenant_id)


def orphaned(live_owners: Select[str]) -> ColumnElement[bool]:
    """Runs no live instance executes: owner none, or not among `live_owners`."""
    return or_(Run.owner.is_(None), Run.owner.not_in(live_owners))


async def mark_interrupted(
    session: AsyncSession,
    scope: ColumnElement[bool] | None = None,
    *,
    statuses: tuple[str, ...] = ("running",),
) -> int:
    """Mark runs in `statuses` (default: `running`) within `scope` as interrupted, with
    their open tool calls; how many were."""
    now = utcnow()
    runs = update(Run).where(Run.status.in_(statuses))
    if scope is not None:
        runs = runs.where(scope)
    ids = (
        await session.scalars(
            runs.values(
                status="interrupted",
                error=INTERRUPTED_ERROR,
                finished_at=now,
                pending_input=None,
                owner=None,
            )
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
