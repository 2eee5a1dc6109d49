"""`/api/conversations`: conversation threads and their messages (paginated).

Who sees what: admins and developers see every conversation of their tenant; users (and
viewers) see only their own. A conversation someone may not see answers 404, like one
that does not exist. Reading needs `data:read`, creating and changing `data:write`,
deleting `data:delete` (so users cannot delete; admins and developers can).
Messages are added by runs (`POST /api/conversations/{id}/runs`), not here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from ...security import Permission, Principal, Role
from ...store.models import Conversation, MessageRecord
from ...store.repositories import TenantRepos
from ..deps import ServicesDep, require
from ..errors import ApiError
from ._params import ID_PATTERN, Cursor, IdPath, Limit, Page, Text300

router = APIRouter(prefix="/api/conversations", tags=["conversations"])

_Read = Annotated[Principal, Depends(require(Permission.DATA_READ))]
_Write = Annotated[Principal, Depends(require(Permission.DATA_WRITE))]
_Delete = Annotated[Principal, Depends(require(Permission.DATA_DELETE))]
_Services = ServicesDep
_TENANT_WIDE = frozenset({Role.ADMIN, Role.DEVELOPER})


class ConversationCreate(BaseModel):
    """A new, empty conversation, optionally bound to an agent (by id or name)."""

    model_config = ConfigDict(extra="forbid")

    agent: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    title: Text300 = ""
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


class ConversationUpdate(BaseModel):
    """Changes to a conversation."""

    model_config = ConfigDict(extra="forbid")

    title: Text300 | None = None
    metadata: dict[str, JsonValue] | None = None


class ConversationOut(BaseModel):
    """A conversation (without its messages)."""

    id: str
    title: str
    agent_id: str | None
    user_id: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Conversation) -> ConversationOut:
        return cls(
            id=row.id,
            title=row.title,
            agent_id=row.agent_id,
            user_id=row.user_id,
            metadata=dict(row.extra or {}),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class MessageOut(BaseModel):
    """One stored message, in the OpenAI chat format plus its position and run."""

    id: str
    seq: int
    role: str
    content: Any = None
    tool_calls: list[Any] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    run_id: str | None = None
    created_at: datetime

    @classmethod
    def of(cls, row: MessageRecord) -> MessageOut:
        return cls(
            id=row.id,
            seq=row.seq,
            role=row.role,
            content=row.content,
            tool_calls=row.tool_calls,
            tool_call_id=row.tool_call_id,
            name=row.name,
            run_id=row.run_id,
            created_at=row.created_at,
        )


def sees_all_conversations(principal: Principal) -> bool:
    """Whether `principal` sees every conversation of its tenant (else only its own)."""
    return principal.role in _TENANT_WIDE


async def visible_conversation(
    repos: TenantRepos, principal: Principal, conversation_id: str
) -> Conversation:
    """The conversation if `principal` may see it; `ApiError` 404 otherwise."""
    row = await repos.conversations.get(conversation_id)
    if row is None or not (sees_all_conversations(principal) or row.user_id == principal.user_id):
        raise ApiError(404, "not_found", f"conversation {conversation_id!r} not found")
    return row


@router.get("", summary="List conversations")
async def list_conversations(
    principal: _Read, services: _Services, limit: Limit = 50, cursor: Cursor = None
) -> Page[ConversationOut]:
    """Conversations newest first: the tenant's (admins, developers) or the caller's own."""
    owner = None if sees_all_conversations(principal) else principal.user_id or ""
    async with services.db.repos(principal) as repos:
        page = await repos.conversations.list(user_id=owner, limit=limit, cursor=cursor)
    return Page(items=[ConversationOut.of(c) for c in page.items], next_cursor=page.next_cursor)


@router.post("", status_code=201, summary="Create a conversation")
async def create_conversation(
    body: ConversationCreate, principal: _Write, services: _Services
) -> ConversationOut:
    """A new conversation owned by the caller (404 if the agent does not exist)."""
    async with services.db.repos(principal) as repos:
        agent_id = None
        if body.agent is not None:
            agent = await repos.agents.get(body.agent) or await repos.agents.get_by_name(body.agent)
            if agent is None:
                raise ApiError(404, "not_found", f"agent {body.agent!r} not found")
            agent_id = agent.id
        row = await repos.conversations.create(principal.user_id, agent_id, body.title)
        if body.metadata:
            row = await repos.conversations.update(row.id, extra=body.metadata) or row
    return ConversationOut.of(row)


@router.get("/{conversation_id}", summary="Get a conversation")
async def get_conversation(
    conversation_id: IdPath, principal: _Read, services: _Services
) -> ConversationOut:
    """One conversation (without messages)."""
    async with services.db.repos(principal) as repos:
        return ConversationOut.of(await visible_conversation(repos, principal, conversation_id))


@router.patch("/{conversation_id}", summary="Update a conversation")
async def update_conversation(
    conversation_id: IdPath, body: ConversationUpdate, principal: _Write, services: _Services
) -> ConversationOut:
    """Change the title and/or metadata."""
    async with services.db.repos(principal) as repos:
        await visible_conversation(repos, principal, conversation_id)
        row = await repos.conversations.update(
            conversation_id, title=body.title, extra=body.metadata
        )
    if row is None:
        raise ApiError(404, "not_found", f"conversation {conversation_id!r} not found")
    return ConversationOut.of(row)


@router.delete("/{conversation_id}", status_code=204, summary="Delete a conversation")
async def delete_conversation(
    conversation_id: IdPath, principal: _Delete, services: _Services
) -> Response:
    """Delete the conversation with its messages and runs."""
    async with services.db.repos(principal) as repos:
        await visible_conversation(repos, principal, conversation_id)
        await repos.conversations.delete(conversation_id)
    return Response(status_code=204)


@router.get("/{conversation_id}/messages", summary="List a conversation's messages")
async def list_messages(
    conversation_id: IdPath,
    principal: _Read,
    services: _Services,
    limit: Annotated[int, Query(ge=1, le=500, description="Messages per page.")] = 100,
    cursor: Annotated[
        str | None,
        Query(pattern=r"^[0-9]{1,9}$", description="`next_cursor` of the previous page."),
    ] = None,
) -> Page[MessageOut]:
    """Messages in conversation order, oldest first; follow `next_cursor` for more."""
    async with services.db.repos(principal) as repos:
        await visible_conversation(repos, principal, conversation_id)
        after = None if cursor is None else int(cursor)
        page = await repos.messages.list(conversation_id, limit=limit, after_seq=after)
    return Page(items=[MessageOut.of(m) for m in page.items], next_cursor=page.next_cursor)
