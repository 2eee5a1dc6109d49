"""What every repository shares: the session, the tenant filter, keyset pagination."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from agentguild.security.principal import Principal

from ..errors import InvalidCursorError
from ..views import Page

MAX_PAGE_SIZE = 500
"""Larger `limit`s are clamped to this."""


class _Keyed(Protocol):
    id: Any
    created_at: datetime


RowT = TypeVar("RowT", bound=_Keyed)
SelectT = TypeVar("SelectT", bound=Select[Any])
ObjT = TypeVar("ObjT")


class Detaching:
    """Returns rows detached from the session: snapshots that later writes do not change."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def _detach(self, row: ObjT) -> ObjT:
        self._session.expunge(row)
        return row

    async def _one(self, query: Select[ObjT]) -> ObjT | None:
        row = await self._session.scalar(query)
        return None if row is None else self._detach(row)

    async def _all(self, query: Select[ObjT]) -> list[ObjT]:
        return [self._detach(row) for row in (await self._session.scalars(query)).all()]


class TenantRepo(Detaching):
    """Base of the tenant-scoped repositories: every query filters on `tenant_id`."""

    def __init__(self, session: AsyncSession, principal: Principal) -> None:
        super().__init__(session)
        self._principal = principal
        self._tenant_id = principal.tenant_id


def clamp_limit(limit: int) -> int:
    """`limit` bounded to 1..MAX_PAGE_SIZE."""
    return max(1, min(limit, MAX_PAGE_SIZE))


def encode_cursor(*values: Any) -> str:
    """An opaque cursor holding `values` (JSON, URL-safe base64)."""
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    """The values of a cursor made by `encode_cursor`; InvalidCursorError if malformed."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursorError(f"invalid pagination cursor {cursor[:40]!r}") from exc
    if not isinstance(values, list):
        raise InvalidCursorError(f"invalid pagination cursor {cursor[:40]!r}")
    return values


def newest_first(
    query: SelectT,
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[Any],
    cursor: str | None,
    limit: int,
) -> SelectT:
    """`query` ordered newest first on (created_at, id), resumed after `cursor`."""
    if cursor is not None:
        values = decode_cursor(cursor)
        try:
            after_time = datetime.fromisoformat(values[0])
            after_id = values[1]
        except (IndexError, TypeError, ValueError) as exc:
            raise InvalidCursorError(f"invalid pagination cursor {cursor[:40]!r}") from exc
        # A forged cursor must not reach the database as a naive time or a non-text id.
        if after_time.tzinfo is None or not isinstance(after_id, str):
            raise InvalidCursorError(f"invalid pagination cursor {cursor[:40]!r}")
        condition: ColumnElement[bool] = or_(
            created_at < after_time, and_(created_at == after_time, row_id < after_id)
        )
        query = query.where(condition)
    return query.order_by(created_at.desc(), row_id.desc()).limit(clamp_limit(limit) + 1)


def page_of(rows: Sequence[RowT], limit: int) -> Page[RowT]:
    """A page from `limit + 1` fetched rows: the extra row only says there is more."""
    limit = clamp_limit(limit)
    items = list(rows[:limit])
    if len(rows) <= limit or not items:
        return Page(items)
    last = items[-1]
    return Page(items, encode_cursor(last.created_at.isoformat(), last.id))
