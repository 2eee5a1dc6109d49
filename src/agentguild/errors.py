"""The exception hierarchy: everything agentguild raises derives from `AgentguildError`."""

from __future__ import annotations


class AgentguildError(Exception):
    """Base class of every error agentguild raises."""


class ConfigError(AgentguildError):
    """The configuration is invalid or names something that does not exist."""


class ModelError(AgentguildError):
    """A model call failed.

    `retryable` says whether sending the same request again may succeed.
    """

    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None, body: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class AuthenticationError(ModelError):
    """The provider rejected the credentials (401/403)."""


class BadRequestError(ModelError):
    """The provider rejected the request as invalid (400/404/422)."""


class ContextLengthError(BadRequestError):
    """The prompt plus the requested completion exceed the model's context window."""


class RateLimitError(ModelError):
    """The provider is rate limiting us (429); `retry_after` is in seconds when it said."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = 429,
        body: str | None = None,
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.retry_after = retry_after


class RateLimitExceeded(RateLimitError):
    """Our own rate limit (not the provider's) refused the call; retry after `retry_after`."""


class CircuitOpenError(ModelError):
    """Every deployment that could serve the call has an open circuit breaker."""

    retryable = True


class ServerError(ModelError):
    """The provider failed (5xx)."""

    retryable = True


class ModelTimeoutError(ModelError):
    """The provider did not answer in time."""

    retryable = True


class ModelConnectionError(ModelError):
    """The provider could not be reached."""

    retryable = True


class MalformedResponseError(ModelError):
    """The provider answered with a body we could not parse."""

    retryable = True


class ToolError(AgentguildError):
    """A tool is misdefined, or a tool call could not be made."""


class TaskTakenOverError(AgentguildError):
    """A task's store refused a write: another process has the task now. This one was
    thought dead (it missed its heartbeats) and the task was recovered or taken over
    meanwhile; nothing of the write landed. Stop working on the task, writing nothing more.
    """
