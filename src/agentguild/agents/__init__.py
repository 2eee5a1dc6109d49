"""Agents: the `Agent` protocol and the tool-calling `Assistant`."""

from .assistant import Assistant
from .base import Agent, MessagesInput, final_result, run_sync, to_messages

__all__ = ["Agent", "Assistant", "MessagesInput", "final_result", "run_sync", "to_messages"]
