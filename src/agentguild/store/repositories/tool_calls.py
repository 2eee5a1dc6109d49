"""Tool calls made during runs: what was called, with what, and how it went."""

from __future__ import annotations

from sqlalchemy import select, update

from agentguild.types import ToolCall

from ..errors import NotFoundError
from ..ids import new_id
from ..models import Run, ToolCallRecord, utcnow
from ._base import TenantRepo


class ToolCallRepo(TenantRepo):
    """The tenant's tool-call log."""

    async def start(self, run_id: str, conversation_id: str, call: ToolCall) -> ToolCallRecord:
        """Record a call as `running`; NotFoundError if the run does not exist in this tenant."""
        found = await self._session.scalar(
            select(Run.id).where(Run.tenant_id == self._tenant_id, Run.id == run_id)
        )
        if found is None:
            raise NotFoundError(f"run {run_id!r} not found")
        record = ToolCallRecord(
            id=new_id("tc"),
            tenant_id=self._tenant_id,
            run_id=run_id,
            conversation_id=conversation_id,
            call_id=call.id,
            name=call.name,
            arguments=call.arguments,
            status="running",
            created_at=utcnow(),
        )
        self._session.add(record)
        await self._session.flush()
        return self._detach(record)

    async def finish(
        self, tool_call_id: str, result: str, is_error: bool, duration_ms: float | None
    ) -> bool:
        """Record the outcome (`completed`, or `failed` with `error=result`); False if not found."""
        found = await self._session.scalar(
            update(ToolCallRecord)
            .where(ToolCallRecord.tenant_id == self._tenant_id, ToolCallRecord.id == tool_call_id)
            .values(
                result=result,
                status="failed" if is_error else "completed",
                error=result if is_error else None,
                duration_ms=duration_ms,
                finished_at=utcnow(),
            )
            .returning(ToolCallRecord.id)
            .execution_options(synchronize_session=False)
        )
        return found is not None

    async def list(self, run_id: str) -> list[ToolCallRecord]:
        """The run's tool calls in the order they started ([] if there is no such run)."""
        return await self._all(
            select(ToolCallRecord)
            .where(ToolCallRecord.tenant_id == self._tenant_id, ToolCallRecord.run_id == run_id)
            .order_by(ToolCallRecord.created_at, ToolCallRecord.id)
        )
