"""`Synthesiser`: merges the results of a task's subtasks into one answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..agents.assistant import Assistant
from ..agents.base import Agent
from ..agents.teams._view import run_agent
from ..llm.base import ChatModel
from ..types import Event
from .models import Task

SYNTHESISER_PROMPT = """You write the final answer to a task from the results of its \
subtasks, which specialists worked on. Combine them into one coherent, complete answer to \
the task. Do not mention the subtasks or the specialists. If a part failed, answer as \
well as the other results allow."""
"""The default system prompt of a synthesiser built from a model."""


class Synthesiser:
    """Merges subtask results with an agent (an `Assistant` on `model` by default)."""

    def __init__(
        self,
        agent_or_model: Agent | ChatModel | str,
        *,
        name: str = "synthesiser",
        system_prompt: str = SYNTHESISER_PROMPT,
    ) -> None:
        if isinstance(agent_or_model, (str, ChatModel)):
            self.agent: Agent = Assistant(agent_or_model, name=name, system_prompt=system_prompt)
        else:
            self.agent = agent_or_model

    @property
    def name(self) -> str:
        return self.agent.name

    def run(self, task: Task, *, stream: bool | None = None) -> AsyncIterator[Event]:
        """The agent's run on the task and its subtask results (ends with its `RunResult`)."""
        return run_agent(self.agent, synthesis_prompt(task), stream=stream)


def synthesis_prompt(task: Task) -> str:
    """The task and every subtask's outcome, for the synthesiser."""
    lines = [f"Task: {task.input}", "", "Results of the subtasks:"]
    for subtask in task.subtasks:
        if subtask.status == "completed":
            lines.append(f"\n## {subtask.title}\n{subtask.result or ''}")
        else:
            lines.append(f"\n## {subtask.title}\n(not available: {subtask.status})")
    return "\n".join(lines)


def concatenate(task: Task) -> str:
    """The completed subtasks' results joined under their titles (no synthesiser)."""
    parts = [
        f"## {subtask.title}\n{subtask.result or ''}"
        for subtask in task.subtasks
        if subtask.status == "completed"
    ]
    return "\n\n".join(parts)
