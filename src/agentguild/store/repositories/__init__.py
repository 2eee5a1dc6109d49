"""Repositories: every query of the application, grouped by table."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from agentguild.security.principal import Principal

from .agents import AgentRepo
from .api_keys import ApiKeyRepo
from .conversations import ConversationRepo
from .messages import MessageRepo, to_message
from .runs import FINISHED_STATUSES, RUN_STATUSES, RunMode, RunRepo, RunStatus
from .system import SystemRepos
from .tool_calls import ToolCallRepo
from .usage import UsageRepo
from .users import UserRepo


class TenantRepos:
    """All repositories of one tenant, sharing one session (one transaction).

    Every query filters on the principal's tenant: an id from another tenant behaves
    exactly like a missing one. Permission checks are the caller's job.
    """

    def __init__(self, session: AsyncSession, principal: Principal) -> None:
        self.session = session
        """The underlying session (escape hatch; prefer the repositories)."""
        self.principal = principal
        self.agents = AgentRepo(session, principal)
        self.conversations = ConversationRepo(session, principal)
        self.messages = MessageRepo(session, principal)
        self.runs = RunRepo(session, principal)
        self.tool_calls = ToolCallRepo(session, principal)
        self.usage = UsageRepo(session, principal)
        self.users = UserRepo(session, principal)
        self.api_keys = ApiKeyRepo(session, principal)


__all__ = [
    "FINISHED_STATUSES",
    "RUN_STATUSES",
    "AgentRepo",
    "ApiKeyRepo",
    "ConversationRepo",
    "MessageRepo",
    "RunMode",
    "RunRepo",
    "RunStatus",
    "SystemRepos",
    "TenantRepos",
    "ToolCallRepo",
    "UsageRepo",
    "UserRepo",
    "to_message",
]
