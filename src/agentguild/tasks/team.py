"""`PlannedTeam`: plan a task, run its subtasks on specialists in parallel, merge the results."""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing

from ..agents.base import Agent, MessagesInput, final_result, run_sync, to_messages
from ..agents.teams._choose import description_of
from ..agents.teams._streams import Interrupted, Watch, interleave
from ..agents.termination import ExternalStop, Fired, Timeout, _AnyState
from ..errors import AgentguildError, TaskTakenOverError
from ..llm.base import ChatModel
from ..types import (
    ErrorEvent,
    Event,
    Message,
    RunResult,
    StopReason,
    SubtaskUpdate,
    TaskUpdate,
    Usage,
    UsageEvent,
)
from .models import Subtask, Task
from .planner import DEFAULT_CATEGORIES, Planner
from .scheduler import TaskScheduler
from .store import TaskStore
from .synthesiser import Synthesiser, concatenate


class PlannedTeam:
    """The collaboration system: a planner splits a task into subtasks with dependencies
    and categories, specialists work on them (independent ones in parallel), and a
    synthesiser merges their results into the answer.

    `specialists` maps categories (research, code, analysis, ...) to agents. `planner` is a
    `Planner`, or a model for one whose categories are the specialists' (described by the
    specialists' descriptions). `synthesiser` is a `Synthesiser`, an agent or a model; None
    joins the results under their titles. A plan of one subtask needs no synthesis: its
    result is the answer.

    Each run is a `Task` record: pass `store` to persist it (status, subtasks, results,
    timings, errors) as it changes. Progress streams as `TaskUpdate` and `SubtaskUpdate`
    events among the specialists' own events. The run ends with the answer as its
    `RunResult` ('completed'), or 'error' (the task failed: the error is on the task and in
    an `ErrorEvent`), or 'cancelled' (stopped with `stop`). A task's `timeout_s` fails it
    when exceeded. Like teams, the instance holds only configuration.
    """

    def __init__(
        self,
        planner: Planner | ChatModel | str,
        specialists: Mapping[str, Agent],
        *,
        synthesiser: Synthesiser | Agent | ChatModel | str | None = None,
        name: str = "planned_team",
        description: str = "",
        store: TaskStore | None = None,
        max_concurrency: int = 4,
        retries: int = 0,
        subtask_timeout_s: float | None = None,
        default_category: str | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self.scheduler = TaskScheduler(
            specialists,
            default=default_category,
            max_concurrency=max_concurrency,
            retries=retries,
            subtask_timeout_s=subtask_timeout_s,
        )
        if isinstance(planner, Planner):
            self.planner = planner
        else:
            categories = {
                category: description_of(agent) or DEFAULT_CATEGORIES.get(category, category)
                for category, agent in specialists.items()
            }
            self.planner = Planner(planner, categories=categories)
        if synthesiser is None or isinstance(synthesiser, Synthesiser):
            self.synthesiser = synthesiser
        else:
            self.synthesiser = Synthesiser(synthesiser)
        self.store = store

    def __repr__(self) -> str:
        return f"PlannedTeam(name={self.name!r}, specialists={list(self.scheduler.specialists)})"

    def with_store(self, store: TaskStore | None) -> PlannedTeam:
        """This team saving its tasks to `store` instead (a copy; this one is unchanged)."""
        team = copy.copy(self)
        team.store = store
        return team

    async def run(
        self,
        messages: MessagesInput = (),
        *,
        task: Task | None = None,
        stop: ExternalStop | None = None,
        stream: bool | None = None,
    ) -> AsyncIterator[Event]:
        """Run a task: a new one from `messages` (the last user message is the task), or
        `task`, a stored task to resume (its unfinished subtasks run again). `stop` cancels
        it promptly; `stream` is passed on to the agents that take it."""
        task = task if task is not None else Task(_task_text(messages))
        _prepare(task)
        watched = [s.start() for s in (stop, _timeout(task)) if s is not None]
        check = _AnyState(watched)
        watch = Watch(check.wait() if watched else None)
        usage = Usage()
        try:
            async with aclosing(interleave([self._pipeline(task, stream)], watch)) as events:
                async for _, event in events:
                    if isinstance(event, UsageEvent):
                        usage = usage + event.usage
                    yield event
        except Interrupted:
            fired = check.fired or Fired("stopped")
            async for event in self._end(task, usage, fired=fired):
                yield event
            return
        except TaskTakenOverError:
            raise  # another process has the task: nothing more is stored or told from here
        except Exception as exc:  # recorded on the task; unexpected errors propagate too
            async for event in self._end(task, usage, error=exc):
                yield event
            if not isinstance(exc, AgentguildError):
                raise
            return
        finally:
            await watch.close()
        async for event in self._end(task, usage):
            yield event

    async def result(
        self,
        messages: MessagesInput = (),
        *,
        task: Task | None = None,
        stop: ExternalStop | None = None,
    ) -> RunResult:
        """Run to completion and return the `RunResult`."""
        return await final_result(self.run(messages, task=task, stop=stop))

    def run_sync(self, messages: MessagesInput = (), *, task: Task | None = None) -> RunResult:
        """Run to completion from synchronous code."""
        return run_sync(self.run(messages, task=task))

    async def _pipeline(self, task: Task, stream: bool | None) -> AsyncIterator[Event]:
        task.status, task.started_at = "running", task.started_at or time.time()
        await self._save(task)
        yield TaskUpdate(task.id, "running", self.name, "planning" if not task.subtasks else "")
        if not task.subtasks:
            outcome = await self.planner.plan(task.input)
            yield UsageEvent(outcome.usage, self.planner.model.name, self.planner.name)
            task.subtasks = [
                Subtask(s.id, s.title, s.category, tuple(s.depends_on))
                for s in outcome.plan.subtasks
            ]
            await self._save(task)
            note = f" (fallback: {outcome.problem})" if outcome.fallback else ""
            yield TaskUpdate(
                task.id, "running", self.name, f"planned {len(task.subtasks)} subtasks{note}"
            )
            for subtask in task.subtasks:
                yield SubtaskUpdate(
                    task.id, subtask.id, "pending", self.name, subtask.title, subtask.category
                )
        scheduled = self.scheduler.run(task, store=self.store, agent=self.name, stream=stream)
        async for event in scheduled:
            yield event
        done = [s for s in task.subtasks if s.status == "completed"]
        if not done:
            raise AgentguildError(
                "every subtask failed: "
                + "; ".join(f"{s.id}: {s.error or s.status}" for s in task.subtasks)
            )
        if len(task.subtasks) == 1 or self.synthesiser is None:
            task.result = done[0].result if len(task.subtasks) == 1 else concatenate(task)
            return
        result: RunResult | None = None
        async for event in self.synthesiser.run(task, stream=stream):
            if isinstance(event, RunResult):
                result = event
            else:
                yield event
        if result is None or not result.output.strip():
            raise AgentguildError(f"the synthesiser {self.synthesiser.name!r} gave no answer")
        task.result = result.output

    async def _end(
        self,
        task: Task,
        usage: Usage,
        *,
        fired: Fired | None = None,
        error: Exception | None = None,
    ) -> AsyncIterator[Event]:
        task.finished_at = time.time()
        task.usage = task.usage + usage
        reason: StopReason = "completed"
        if fired is not None and fired.external:
            task.status, task.error, reason = "cancelled", fired.reason, "cancelled"
        elif fired is not None or error is not None:
            task.status, reason = "failed", "error"
            task.error = fired.reason if fired is not None else str(error)
        else:
            task.status = "completed"
        for subtask in task.subtasks:
            if subtask.status in ("pending", "running"):
                subtask.status, subtask.finished_at = "cancelled", task.finished_at
        await self._save(task)
        if task.status == "failed":
            kind = type(error).__name__ if error is not None else "TimeoutError"
            yield ErrorEvent(kind, task.error or "", self.name)
        yield TaskUpdate(task.id, task.status, self.name, task.result or task.error or "")
        answer = (Message.assistant(task.result, name=self.name),) if task.result else ()
        yield RunResult(self.name, answer, usage, reason, len(task.subtasks))

    async def _save(self, task: Task) -> None:
        if self.store is not None:
            await self.store.save(task)


def _task_text(messages: MessagesInput) -> str:
    history = to_messages(messages)
    for message in reversed(history):
        if message.role == "user" and message.text.strip():
            return message.text
    raise ValueError("a planned task needs a user message saying what to do")


def _prepare(task: Task) -> None:
    """Make a resumed task's unfinished subtasks runnable again."""
    task.status, task.error, task.result, task.finished_at = "pending", None, None, None
    for subtask in task.subtasks:
        if subtask.status != "completed":
            subtask.status, subtask.error, subtask.finished_at = "pending", None, None


def _timeout(task: Task) -> Timeout | None:
    return Timeout(task.timeout_s) if task.timeout_s else None
