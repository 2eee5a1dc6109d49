"""Planned tasks: the collaboration system of the brief.

A `Planner` decomposes a task into subtasks with dependencies and a category (research,
code, analysis, ...); a `TaskScheduler` runs them on the specialist for each category,
independent ones in parallel; a `Synthesiser` merges the results. `PlannedTeam` is the
whole thing as an `Agent`; `TaskManager` runs tasks in the background (submit, list, get,
cancel); a `TaskStore` persists tasks and subtasks with their status, results, timings
and errors (`InMemoryTaskStore` here; `agentguild.store.SqlTaskStore` in the serving
platform's database).
"""

from ..types import SubtaskStatus, SubtaskUpdate, TaskStatus, TaskUpdate
from .manager import TaskClaim, TaskEventObserver, TaskManager
from .models import FINISHED_SUBTASK, FINISHED_TASK, Mark, Plan, PlannedSubtask, Subtask, Task
from .planner import DEFAULT_CATEGORIES, PLANNER_PROMPT, Planner, PlanOutcome
from .scheduler import SubtaskFailed, TaskScheduler, subtask_prompt
from .store import InMemoryTaskStore, TaskStore
from .synthesiser import SYNTHESISER_PROMPT, Synthesiser, concatenate, synthesis_prompt
from .team import PlannedTeam

__all__ = [
    "DEFAULT_CATEGORIES",
    "FINISHED_SUBTASK",
    "FINISHED_TASK",
    "PLANNER_PROMPT",
    "SYNTHESISER_PROMPT",
    "InMemoryTaskStore",
    "Mark",
    "Plan",
    "PlanOutcome",
    "PlannedSubtask",
    "PlannedTeam",
    "Planner",
    "Subtask",
    "SubtaskFailed",
    "SubtaskStatus",
    "SubtaskUpdate",
    "Synthesiser",
    "Task",
    "TaskClaim",
    "TaskEventObserver",
    "TaskManager",
    "TaskScheduler",
    "TaskStatus",
    "TaskStore",
    "TaskUpdate",
    "concatenate",
    "subtask_prompt",
    "synthesis_prompt",
]
