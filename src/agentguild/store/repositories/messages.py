"""Messages of conversations, numbered by `seq` without gaps."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, update

from agentguild.types import Message

from ..errors import NotFoundError
from ..ids import new_id
from ..models import Conversation, MessageRecord, utcnow
from ..views import Page
from ._base import TenantRepo, clamp_limit


class MessageRepo(TenantRepo):
    """Append-only message log of the tenant's conversations."""

    async def append(
        self,
        conversation_id: str,
        messages: Sequence[Message],
        run_id: str | None = None,
    ) -> builtins.list[MessageRecord]:
        """Store `messages` at the end of the conversation, numbered consecutively.

        The conversation's `next_seq` is bumped in one UPDATE, which locks its row (or,
        on SQLite, the database) until commit, so concurrent appends never collide or
        leave gaps. NotFoundError if the conversation does not exist in this tenant.
        """
        if not messages:
            if await self._conversation_exists(conversation_id):
                return []
            raise NotFoundError(f"conversation {conversation_id!r} not found")
        now = utcnow()
        end = await self._session.scalar(
            update(Conversation)
            .where(Conversation.tenant_id == self._tenant_id, Conversation.id == conversation_id)
            .values(next_seq=Conversation.next_seq + len(messages), updated_at=now)
            .returning(Conversation.next_seq)
            .execution_options(synchronize_session=False)
        )
        if end is None:
            raise NotFoundError(f"conversation {conversation_id!r} not found")
        start = end - len(messages)
        rows = [
            _row(self._tenant_id, conversation_id, run_id, start + i, message, now)
            for i, message in enumerate(messages)
        ]
        await self._session.execute(insert(MessageRecord), rows)
        return [MessageRecord(**row) for row in rows]

    async def list(
        self,
        conversation_id: str,
        limit: int = 100,
        before_seq: int | None = None,
        after_seq: int | None = None,
    ) -> Page[MessageRecord]:
        """A window of messages, always in ascending `seq` order.

        Forward (default): the first `limit` messages after `after_seq`; `next_cursor` is
        the last seq returned: pass `after_seq=int(next_cursor)` for the next window.
        Backward (`before_seq` given, `after_seq` not): the last `limit` messages before
        `before_seq`; `next_cursor` is the first seq returned: pass it as `before_seq`.
        """
        limit = clamp_limit(limit)
        query = select(MessageRecord).where(
            MessageRecord.tenant_id == self._tenant_id,
            MessageRecord.conversation_id == conversation_id,
        )
        if before_seq is not None:
            query = query.where(MessageRecord.seq < before_seq)
        if after_seq is not None:
            query = query.where(MessageRecord.seq > after_seq)
        backward = before_seq is not None and after_seq is None
        order = MessageRecord.seq.desc() if backward else MessageRecord.seq.asc()
        rows = await self._all(query.order_by(order).limit(limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        if backward:
            rows.reverse()
        if not more or not rows:
            return Page(rows)
        return Page(rows, str(rows[0].seq if backward else rows[-1].seq))

    async def history(self, conversation_id: str) -> builtins.list[Message]:
        """Every message of the conversation, in order ([] if there is no such conversation)."""
        rows = await self._session.scalars(
            select(MessageRecord)
            .where(
                MessageRecord.tenant_id == self._tenant_id,
                MessageRecord.conversation_id == conversation_id,
            )
            .order_by(MessageRecord.seq)
        )
        return [to_message(row) for row in rows]

    async def count(self, conversation_id: str) -> int:
        """How many messages the conversation has (0 if there is no such conversation)."""
        total = await self._session.scalar(
            select(func.count()).where(
                MessageRecord.tenant_id == self._tenant_id,
                MessageRecord.conversation_id == conversation_id,
            )
        )
        return int(total or 0)

    async def _conversation_exists(self, conversation_id: str) -> bool:
        found = await self._session.scalar(
            select(Conversation.id).where(
                Conversation.tenant_id == self._tenant_id, Conversation.id == conversation_id
            )
        )
        return found is not None


def to_message(record: MessageRecord) -> Message:
    """A stored message as an `agentguild.types.Message`."""
    data: dict[str, Any] = {"role": record.role, "content": record.content}
    if record.tool_calls:
        data["tool_calls"] = record.tool_calls
    if record.tool_call_id is not None:
        data["tool_call_id"] = record.tool_call_id
    if record.name is not None:
        data["name"] = record.name
    return Message.from_openai(data)


def _row(
    tenant_id: str,
    conversation_id: str,
    run_id: str | None,
    seq: int,
    message: Message,
    now: Any,
) -> dict[str, Any]:
    data = message.to_openai()
    return {
        "id": new_id("msg"),
        "tenant_id": tenant_id,
        "conversation_id": conversation_id,
        "run_id": run_id,
        "seq": seq,
        "role": message.role,
        "content": data["content"],
        "tool_calls": data.get("tool_calls"),
        "tool_call_id": message.tool_call_id,
        "name": message.name,
        "created_at": now,
    }
