"""`AgentTool`: any agent or team, offered to another agent as a tool (hierarchies)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from ..tools.base import Tool
from ..types import Event, RunResult
from .base import Agent
from .teams._view import tool_name

EventObserver = Callable[[Event], "Awaitable[None] | None"]
"""Called with each event of the agent behind an `AgentTool` (sync or async)."""

__all__ = ["AgentTool", "EventObserver"]


class AgentTool(Tool):
    """A tool that delegates to an agent (or a team) and returns its final answer.

    The model calling it passes one argument, `task`: what the agent should do, with all
    the context it needs (the agent sees nothing else of the caller's conversation). Each
    call is a fresh, independent run, so calls run concurrently like any tools.

    A specialist becomes a tool of a manager, and the manager a tool of an executive::

        manager = Assistant(model, name="manager", tools=[AgentTool(analyst), AgentTool(legal)])
        executive = Assistant(model, name="executive", tools=[AgentTool(manager)])

    The tool is named after the agent and described by `description` (default: the agent's
    own `description`). The agent's events are not part of the caller's stream (a tool
    returns text); `on_event` sees them as they happen, e.g. to log or meter them. A run that
    fails raises, and the executor reports the error to the calling model.
    """

    __slots__ = ("agent", "on_event")

    def __init__(
        self,
        agent: Agent,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float | None = None,
        on_event: EventObserver | None = None,
    ) -> None:
        self.agent = agent
        """The agent the tool runs."""
        self.on_event = on_event

        async def delegate(task: str) -> str:
            """Delegate a task.

            Args:
                task: the task or question, with all the context needed to handle it
            """
            return await self._delegate(task)

        own = getattr(agent, "description", None)
        super().__init__(
            delegate,
            name=name or tool_name(agent.name),
            description=description
            or (own if isinstance(own, str) and own else None)
            or f"Ask the {agent.name} agent to handle a task and return its answer.",
            timeout_s=timeout_s,
        )

    def __repr__(self) -> str:
        return f"AgentTool({self.name!r}, agent={self.agent.name!r})"

    async def _delegate(self, task: str) -> str:
        result: RunResult | None = None
        async for event in self.agent.run(task):
            if self.on_event is not None:
                outcome = self.on_event(event)
                if inspect.isawaitable(outcome):
                    await outcome
            if isinstance(event, RunResult):
                result = event
        if result is None:
            return f"{self.agent.name} ended without an answer."
        answer = result.output or f"{self.agent.name} gave no answer."
        if result.stop_reason != "completed":
            answer += f"\n(stopped: {result.stop_reason})"
        return answer
