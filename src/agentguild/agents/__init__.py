"""Agents: the `Agent` protocol, the tool-calling `Assistant`, agents as tools, and teams."""

from .agent_tool import AgentTool
from .assistant import Assistant
from .base import Agent, MessagesInput, final_result, run_sync, to_messages
from .spec import load_agent_spec
from .teams import RoundRobinTeam, RouterAgent, SelectorTeam, Swarm, TeamState
from .termination import (
    ExternalStop,
    HandoffTermination,
    MaxMessages,
    Termination,
    TextMention,
    Timeout,
    TokenBudget,
)

__all__ = [
    "Agent",
    "AgentTool",
    "Assistant",
    "ExternalStop",
    "HandoffTermination",
    "MaxMessages",
    "MessagesInput",
    "RoundRobinTeam",
    "RouterAgent",
    "SelectorTeam",
    "Swarm",
    "TeamState",
    "Termination",
    "TextMention",
    "Timeout",
    "TokenBudget",
    "final_result",
    "load_agent_spec",
    "run_sync",
    "to_messages",
]
