"""Parameter and field types the routers share: ids, pagination, safe text."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, Field

T = TypeVar("T")

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refuse it here rather than fail in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text200 = Annotated[str, Field(max_length=200), AfterValidator(_no_nul)]
"""Short free text (titles, names of keys)."""
Text300 = Annotated[str, Field(max_length=300), AfterValidator(_no_nul)]
Text2000 = Annotated[str, Field(max_length=2000), AfterValidator(_no_nul)]
"""Longer free text (descriptions)."""

IdPath = Annotated[str, Path(pattern=ID_PATTERN, description="The resource's id.")]
"""A resource id in the path (ids look like `agt_01jd...`)."""
Limit = Annotated[int, Query(ge=1, le=200, description="Items per page.")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=500,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="`next_cursor` of the previous page, as received.",
    ),
]


class Page(BaseModel, Generic[T]):
    """One page of a listing; pass `next_cursor` back as `cursor` for the next (null: last)."""

    items: list[T]
    next_cursor: str | None = None
