"""Serving agents: stored agent configurations, the runner, live runs and their events.

Names are imported lazily, so `agentguild.runtime.agent_config` stays cheap to import.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._events_redis import RedisEventBus
    from .agent_config import AgentConfig, AssistantConfig, PlannedTaskConfig, PlannerConfig
    from .agent_factory import AgentFactory, bind_caller, builtin_tools
    from .catalog import AgentCatalog, CatalogEntry
    from .celery_app import CeleryQueue
    from .event_codec import RunCompleted, RunStarted, decode_event, encode_event
    from .events import EventBus, InProcessEventBus, event_bus_from_settings
    from .limits import QuotaExceededError, RunLimitError, RunLimits, TenantLimits
    from .queue import (
        DeadLetterView,
        InProcessQueue,
        JobContext,
        JobRegistry,
        JobView,
        PermanentJobError,
        TaskQueue,
    )
    from .run_registry import RunHandle, RunLog, RunRegistry
    from .runner import NoAgentError, Runner
    from .services import Services
    from .task_service import NotPlannedError, TaskService

_EXPORTS = {
    "AgentConfig": "agent_config",
    "AssistantConfig": "agent_config",
    "PlannedTaskConfig": "agent_config",
    "PlannerConfig": "agent_config",
    "AgentFactory": "agent_factory",
    "bind_caller": "agent_factory",
    "builtin_tools": "agent_factory",
    "AgentCatalog": "catalog",
    "CatalogEntry": "catalog",
    "RunCompleted": "event_codec",
    "RunStarted": "event_codec",
    "decode_event": "event_codec",
    "encode_event": "event_codec",
    "EventBus": "events",
    "InProcessEventBus": "events",
    "event_bus_from_settings": "events",
    "RedisEventBus": "_events_redis",
    "RunHandle": "run_registry",
    "RunLog": "run_registry",
    "RunRegistry": "run_registry",
    "NoAgentError": "runner",
    "QuotaExceededError": "limits",
    "RunLimitError": "limits",
    "RunLimits": "limits",
    "TenantLimits": "limits",
    "Runner": "runner",
    "NotPlannedError": "task_service",
    "TaskService": "task_service",
    "Services": "services",
    "TaskQueue": "queue",
    "InProcessQueue": "queue",
    "JobRegistry": "queue",
    "JobContext": "queue",
    "JobView": "queue",
    "DeadLetterView": "queue",
    "PermanentJobError": "queue",
    "CeleryQueue": "celery_app",
}

__all__ = [
    "AgentCatalog",
    "AgentConfig",
    "AgentFactory",
    "AssistantConfig",
    "CatalogEntry",
    "CeleryQueue",
    "DeadLetterView",
    "EventBus",
    "InProcessEventBus",
    "InProcessQueue",
    "JobContext",
    "JobRegistry",
    "JobView",
    "NoAgentError",
    "NotPlannedError",
    "PermanentJobError",
    "PlannedTaskConfig",
    "PlannerConfig",
    "QuotaExceededError",
    "RedisEventBus",
    "RunCompleted",
    "RunHandle",
    "RunLimitError",
    "RunLimits",
    "RunLog",
    "RunRegistry",
    "RunStarted",
    "Runner",
    "Services",
    "TaskQueue",
    "TaskService",
    "TenantLimits",
    "bind_caller",
    "builtin_tools",
    "decode_event",
    "encode_event",
    "event_bus_from_settings",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
