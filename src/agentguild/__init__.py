"""agentguild: production-grade LLM agents, tools and teams.

The public surface: `Assistant`, `tool`, the message and event types, and the model
clients in `agentguild.llm`.

Names are imported on first use (PEP 562), so `import agentguild` stays fast and pulls in
no model client, server or YAML machinery until they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .agents import (
        Agent,
        AgentTool,
        Assistant,
        ExternalStop,
        MaxMessages,
        RoundRobinTeam,
        RouterAgent,
        SelectorTeam,
        Swarm,
        TextMention,
        TokenBudget,
    )
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
        HandoffEvent,
        ImagePart,
        Message,
        MessageEvent,
        RunResult,
        SpeakerSelected,
        SubtaskUpdate,
        TaskUpdate,
        TerminationEvent,
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

_EXPORTS: dict[str, str] = {
    "Agent": ".agents",
    "AgentTool": ".agents",
    "AgentguildError": ".errors",
    "Assistant": ".agents",
    "AuthenticationError": ".errors",
    "BadRequestError": ".errors",
    "CircuitOpenError": ".errors",
    "ConfigError": ".errors",
    "ContextLengthError": ".errors",
    "ErrorEvent": ".types",
    "Event": ".types",
    "ExternalStop": ".agents",
    "HandoffEvent": ".types",
    "ImagePart": ".types",
    "MalformedResponseError": ".errors",
    "MaxMessages": ".agents",
    "Message": ".types",
    "MessageEvent": ".types",
    "ModelConnectionError": ".errors",
    "ModelError": ".errors",
    "ModelTimeoutError": ".errors",
    "RateLimitError": ".errors",
    "RateLimitExceeded": ".errors",
    "RoundRobinTeam": ".agents",
    "RouterAgent": ".agents",
    "RunResult": ".types",
    "SelectorTeam": ".agents",
    "ServerError": ".errors",
    "SpeakerSelected": ".types",
    "SubtaskUpdate": ".types",
    "Swarm": ".agents",
    "TaskUpdate": ".types",
    "TerminationEvent": ".types",
    "TextDelta": ".types",
    "TextMention": ".agents",
    "TextPart": ".types",
    "TokenBudget": ".agents",
    "Tool": ".tools",
    "ToolCall": ".types",
    "ToolCallEvent": ".types",
    "ToolError": ".errors",
    "ToolRegistry": ".tools",
    "ToolResult": ".types",
    "ToolResultEvent": ".types",
    "ToolSpec": ".types",
    "Usage": ".types",
    "UsageEvent": ".types",
    "tool": ".tools",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentguild' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "Agent",
    "AgentTool",
    "AgentguildError",
    "Assistant",
    "AuthenticationError",
    "BadRequestError",
    "CircuitOpenError",
    "ConfigError",
    "ContextLengthError",
    "ErrorEvent",
    "Event",
    "ExternalStop",
    "HandoffEvent",
    "ImagePart",
    "MalformedResponseError",
    "MaxMessages",
    "Message",
    "MessageEvent",
    "ModelConnectionError",
    "ModelError",
    "ModelTimeoutError",
    "RateLimitError",
    "RateLimitExceeded",
    "RoundRobinTeam",
    "RouterAgent",
    "RunResult",
    "SelectorTeam",
    "ServerError",
    "SpeakerSelected",
    "SubtaskUpdate",
    "Swarm",
    "TaskUpdate",
    "TerminationEvent",
    "TextDelta",
    "TextMention",
    "TextPart",
    "TokenBudget",
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
