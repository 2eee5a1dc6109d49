"""Serving agents: stored agent configurations, the runner, live runs and their events.

Names are imported lazily, so `agentguild.runtime.agent_config` stays cheap to import.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .agent_config import AgentConfig, AssistantConfig
    from .agent_factory import AgentFactory, bind_caller, builtin_tools
    from .catalog import AgentCatalog, CatalogEntry
    from .event_codec import RunCompleted, RunStarted, decode_event, encode_event
    from .limits import QuotaExceededError, RunLimitError, RunLimits, TenantLimits
    from .run_registry import RunHandle, RunLog, RunRegistry
    from .runner import NoAgentError, Runner
    from .services import Services

_EXPORTS = {
    "AgentConfig": "agent_config",
    "AssistantConfig": "agent_config",
    "AgentFactory": "agent_factory",
    "bind_caller": "agent_factory",
    "builtin_tools": "agent_factory",
    "AgentCatalog": "catalog",
    "CatalogEntry": "catalog",
    "RunCompleted": "event_codec",
    "RunStarted": "event_codec",
    "decode_event": "event_codec",
    "encode_event": "event_codec",
    "RunHandle": "run_registry",
    "RunLog": "run_registry",
    "RunRegistry": "run_registry",
    "NoAgentError": "runner",
    "QuotaExceededError": "limits",
    "RunLimitError": "limits",
    "RunLimits": "limits",
    "TenantLimits": "limits",
    "Runner": "runner",
    "Services": "services",
}

__all__ = [
    "AgentCatalog",
    "AgentConfig",
    "AgentFactory",
    "AssistantConfig",
    "CatalogEntry",
    "NoAgentError",
    "QuotaExceededError",
    "RunCompleted",
    "RunHandle",
    "RunLimitError",
    "RunLimits",
    "RunLog",
    "RunRegistry",
    "RunStarted",
    "Runner",
    "Services",
    "TenantLimits",
    "bind_caller",
    "builtin_tools",
    "decode_event",
    "encode_event",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
