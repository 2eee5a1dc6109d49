"""Errors the store raises; the server maps them to 404 / 409 / 400."""

from __future__ import annotations

from agentguild.errors import AgentguildError, TaskTakenOverError


class StoreError(AgentguildError):
    """Base class of persistence errors."""


class NotFoundError(StoreError):
    """A referenced row does not exist in the caller's tenant (foreign ids look missing)."""


class ConflictError(StoreError):
    """A write would break a uniqueness rule (a taken agent name or username)."""


class NotRunOwnerError(StoreError):
    """A process wrote to a run it no longer executes: its owner died in the others' eyes
    (a missed heartbeat) and the run was recovered or claimed elsewhere meanwhile."""


class NotTaskOwnerError(StoreError, TaskTakenOverError):
    """A process saved a task it no longer owns: its owner died in the others' eyes (a
    missed heartbeat) and the task was recovered (failed or cancelled, which clears its
    owner) or taken over elsewhere meanwhile."""


class InvalidCursorError(StoreError):
    """A pagination cursor is malformed; pass back `next_cursor` exactly as received."""
