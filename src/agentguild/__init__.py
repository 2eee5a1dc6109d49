"""agentguild: production-grade LLM agents, tools and teams.

The public surface: `Assistant`, `tool`, the message and event types, and the model
clients in `agentguild.llm`.
"""

from .agents import Agent, Assistant
from .errors import (
    AgentguildError,
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ConfigError,
    ContextLengthError,
    MalformedResponseError,
    ModelConnectionError,
    ModelError,
    ModelTimeoutError,
    RateLimitError,
    RateLimitExceeded,
    ServerError,
    ToolError,
)
from .tools import Tool, ToolRegistry, tool
from .types import (
    ErrorEvent,
    Event,
    ImagePart,
    Message,
    MessageEvent,
    RunResult,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallEvent,
    ToolResult,
    ToolResultEvent,
    ToolSpec,
    Usage,
    UsageEvent,
)

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentguildError",
    "Assistant",
    "AuthenticationError",
    "BadRequestError",
    "CircuitOpenError",
    "ConfigError",
    "ContextLengthError",
    "ErrorEvent",
    "Event",
    "ImagePart",
    "MalformedResponseError",
    "Message",
    "MessageEvent",
    "ModelConnectionError",
    "ModelError",
    "ModelTimeoutError",
    "RateLimitError",
    "RateLimitExceeded",
    "RunResult",
    "ServerError",
    "TextDelta",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolCallEvent",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "ToolResultEvent",
    "ToolSpec",
    "Usage",
    "UsageEvent",
    "__version__",
    "tool",
]
