"""Authentication errors (the server answers them with 401)."""

from __future__ import annotations

from agentguild.errors import AgentguildError


class AuthError(AgentguildError):
    """Credentials are missing, invalid, expired or revoked; the message says which."""
