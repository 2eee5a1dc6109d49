"""Conversations: the threads messages and runs belong to."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update

from ..errors import NotFoundError
from ..ids import new_id
from ..models import AgentRecord, Conversation, utcnow
from ..views import Page
from ._base import TenantRepo, newest_first, page_of


class ConversationRepo(TenantRepo):
    """The tenant's conversations. Deleting one deletes its messages, runs and tool calls."""

    async def create(
        self, user_id: str | None, agent_id: str | None, title: str = ""
    ) -> Conversation:
        """A new, empty conversation; NotFoundError if `agent_id` is not a live agent here."""
        if agent_id is not None:
            found = await self._session.scalar(
                select(AgentRecord.id).where(
                    AgentRecord.tenant_id == self._tenant_id,
                    AgentRecord.id == agent_id,
                    AgentRecord.deleted_at.is_(None),
                )
            )
            if found is None:
                raise NotFoundError(f"agent {agent_id!r} not found")
        now = utcnow()
        conversation = Conversation(
            id=new_id("conv"),
            tenant_id=self._tenant_id,
            user_id=user_id,
            agent_id=agent_id,
            title=title,
            next_seq=0,
            created_at=now,
            updated_at=now,
            extra={},
        )
        self._session.add(conversation)
        await self._session.flush()
        return self._detach(conversation)

    async def get(self, conversation_id: str) -> Conversation | None:
        """The conversation, or None."""
        return await self._one(
            select(Conversation).where(
                Conversation.tenant_id == self._tenant_id, Conversation.id == conversation_id
            )
        )

    async def list(
        self, user_id: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page[Conversation]:
        """Conversations newest first; only `user_id`'s when given."""
        query = select(Conversation).where(Conversation.tenant_id == self._tenant_id)
        if user_id is not None:
            query = query.where(Conversation.user_id == user_id)
        query = newest_first(query, Conversation.created_at, Conversation.id, cursor, limit)
        return page_of(await self._all(query), limit)

    async def update(
        self,
        conversation_id: str,
        *,
        title: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Conversation | None:
        """Change the title and/or the free-form `extra` object; None if not found."""
        values: dict[str, Any] = {"updated_at": utcnow()}
        if title is not None:
            values["title"] = title
        if extra is not None:
            values["extra"] = extra
        found = await self._session.scalar(
            update(Conversation)
            .where(Conversation.tenant_id == self._tenant_id, Conversation.id == conversation_id)
            .values(**values)
            .returning(Conversation.id)
            .execution_options(synchronize_session=False)
        )
        return None if found is None else await self.get(conversation_id)

    async def delete(self, conversation_id: str) -> bool:
        """Delete the conversation and everything in it; False if not found."""
        found = await self._session.scalar(
            delete(Conversation)
            .where(Conversation.tenant_id == self._tenant_id, Conversation.id == conversation_id)
            .returning(Conversation.id)
            .execution_options(synchronize_session=False)
        )
        return found is not None

    async def touch(self, conversation_id: str) -> bool:
        """Mark the conversation as just active (`updated_at`); False if not found."""
        found = await self._session.scalar(
            update(Conversation)
            .where(Conversation.tenant_id == self._tenant_id, Conversation.id == conversation_id)
            .values(updated_at=utcnow())
            .returning(Conversation.id)
            .execution_options(synchronize_session=False)
        )
        return found is not None
