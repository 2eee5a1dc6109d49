"""`TaskScheduler`: runs a task's subtasks on specialists, in parallel where independent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from ..agents.base import Agent
from ..agents.teams._view import run_agent
from ..errors import AgentguildError
from ..types import Event, RunResult, SubtaskUpdate
from .models import Mark, Subtask, Task
from .store import TaskStore

_BLOCKING = ("failed", "skipped", "cancelled")


class SubtaskFailed(AgentguildError):
    """A specialist could not complete a subtask."""


@dataclass(frozen=True, slots=True)
class _Done:
    subtask_id: str


class TaskScheduler:
    """Runs the subtasks of a task, each on the specialist for its category.

    Every subtask whose dependencies have completed starts at once, up to `max_concurrency`
    at a time; the rest wait for their dependencies. A specialist sees the overall task,
    its subtask and the results of the subtasks it depends on. A failed subtask (an error,
    an empty answer, `subtask_timeout_s` exceeded) is tried again up to `retries` times;
    if it still fails, the subtasks depending on it are skipped. Starts and ends are
    recorded in `task.timeline` in the order they happen; statuses, results, errors and
    timings on the subtasks, and in `store` as they change.

    `specialists` maps categories to agents; a category without one goes to `default`
    (else the first specialist).
    """

    def __init__(
        self,
        specialists: Mapping[str, Agent],
        *,
        default: str | None = None,
        max_concurrency: int = 4,
        retries: int = 0,
        subtask_timeout_s: float | None = None,
    ) -> None:
        if not specialists:
            raise ValueError("a scheduler needs at least one specialist")
        if default is not None and default not in specialists:
            raise ValueError(f"default category {default!r} has no specialist")
        if max_concurrency < 1 or retries < 0:
            raise ValueError("max_concurrency must be at least 1 and retries at least 0")
        self.specialists = dict(specialists)
        self.default = default or next(iter(self.specialists))
        self.max_concurrency = max_concurrency
        self.retries = retries
        self.subtask_timeout_s = subtask_timeout_s

    def specialist_for(self, category: str) -> Agent:
        """The agent that does subtasks of `category`."""
        return self.specialists.get(category) or self.specialists[self.default]

    async def run(
        self,
        task: Task,
        *,
        store: TaskStore | None = None,
        agent: str = "scheduler",
        stream: bool | None = None,
    ) -> AsyncIterator[Event]:
        """Run every pending subtask of `task`, yielding progress and the specialists' events.

        `agent` is the name progress events carry; `stream` is passed on to the specialists
        that take it. Cancelling the run cancels the running subtasks (their status becomes
        'cancelled').
        """
        queue: asyncio.Queue[Event | _Done] = asyncio.Queue()
        limit = asyncio.Semaphore(self.max_concurrency)
        workers: dict[str, asyncio.Task[None]] = {}
        run = _Run(self, task, store, agent, queue, limit, stream)
        try:
            while True:
                async for event in run.launch_ready(workers):
                    yield event
                if not workers:
                    return
                item = await queue.get()
                if isinstance(item, _Done):
                    await workers.pop(item.subtask_id)
                else:
                    yield item
        finally:
            for worker in workers.values():
                worker.cancel()
            await asyncio.gather(*workers.values(), return_exceptions=True)
            now = time.time()
            for subtask in task.subtasks:
                if subtask.status == "running":
                    subtask.status, subtask.finished_at = "cancelled", now
                    task.timeline.append(Mark(subtask.id, "end", now))


class _Run:
    """One scheduler run's shared context."""

    def __init__(
        self,
        scheduler: TaskScheduler,
        task: Task,
        store: TaskStore | None,
        agent: str,
        queue: asyncio.Queue[Event | _Done],
        limit: asyncio.Semaphore,
        stream: bool | None,
    ) -> None:
        self.scheduler, self.task, self.store, self.agent = scheduler, task, store, agent
        self.queue, self.limit, self.stream = queue, limit, stream
        self.by_id = {subtask.id: subtask for subtask in task.subtasks}

    async def launch_ready(self, workers: dict[str, asyncio.Task[None]]) -> AsyncIterator[Event]:
        """Start every subtask whose dependencies completed; skip those with a failed one."""
        changed = True
        while changed:
            changed = False
            for subtask in self.task.subtasks:
                if subtask.status != "pending" or subtask.id in workers:
                    continue
                deps = [self.by_id[d] for d in subtask.depends_on if d in self.by_id]
                blocked = next((d for d in deps if d.status in _BLOCKING), None)
                if blocked is not None:
                    subtask.status, subtask.finished_at = "skipped", time.time()
                    subtask.error = f"dependency {blocked.id!r} {blocked.status}"
                    await self._save(subtask)
                    yield self._update(subtask, subtask.error)
                    changed = True
                elif all(d.status == "completed" for d in deps):
                    workers[subtask.id] = asyncio.create_task(self._work(subtask))

    async def _work(self, subtask: Subtask) -> None:
        try:
            async with self.limit:
                await self._attempts(subtask)
        finally:
            self.queue.put_nowait(_Done(subtask.id))

    async def _attempts(self, subtask: Subtask) -> None:
        specialist = self.scheduler.specialist_for(subtask.category)
        subtask.specialist = specialist.name
        subtask.status, subtask.error = "running", None
        subtask.started_at = time.time()
        self.task.timeline.append(Mark(subtask.id, "start", subtask.started_at))
        prompt = subtask_prompt(self.task, subtask, self.by_id)
        tries = self.scheduler.retries + 1
        for attempt in range(1, tries + 1):
            subtask.attempts += 1
            self.queue.put_nowait(self._update(subtask, attempt=attempt))
            await self._save(subtask)
            try:
                result = await self._attempt(specialist, prompt)
            except Exception as exc:  # the subtask fails; the task goes on
                subtask.error = _describe(exc)
                if attempt < tries:
                    detail = f"attempt {attempt} failed: {subtask.error}; retrying"
                    self.queue.put_nowait(self._update(subtask, detail, attempt=attempt))
                continue
            subtask.status, subtask.result, subtask.error = "completed", result.output, None
            subtask.usage = result.usage
            break
        else:
            subtask.status = "failed"
        subtask.finished_at = time.time()
        self.task.timeline.append(Mark(subtask.id, "end", subtask.finished_at))
        outcome = subtask.result if subtask.status == "completed" else subtask.error
        self.queue.put_nowait(self._update(subtask, outcome or "", attempt=subtask.attempts))
        await self._save(subtask)

    async def _attempt(self, specialist: Agent, prompt: str) -> RunResult:
        result: RunResult | None = None
        async with asyncio.timeout(self.scheduler.subtask_timeout_s):
            async for event in run_agent(specialist, prompt, stream=self.stream):
                if isinstance(event, RunResult):
                    result = event
                else:
                    self.queue.put_nowait(event)
        if result is None:
            raise SubtaskFailed(f"{specialist.name} ended without a result")
        if result.stop_reason in ("error", "cancelled") or not result.output.strip():
            raise SubtaskFailed(f"{specialist.name} gave no answer ({result.stop_reason})")
        return result

    def _update(self, subtask: Subtask, detail: str = "", *, attempt: int = 0) -> SubtaskUpdate:
        return SubtaskUpdate(
            self.task.id,
            subtask.id,
            subtask.status,
            self.agent,
            title=subtask.title,
            category=subtask.category,
            specialist=subtask.specialist,
            attempt=attempt,
            detail=detail,
        )

    async def _save(self, subtask: Subtask) -> None:
        if self.store is not None:
            await self.store.save_subtask(self.task, subtask)


def subtask_prompt(task: Task, subtask: Subtask, by_id: Mapping[str, Subtask]) -> str:
    """What a specialist is asked: the overall task, its subtask, and its inputs."""
    lines = [
        f"Overall task: {task.input}",
        "",
        f"Your part ({subtask.category}): {subtask.title}",
    ]
    inputs = [by_id[d] for d in subtask.depends_on if d in by_id]
    if inputs:
        lines += ["", "Results you can build on:"]
        lines += [f"- {d.title}: {d.result or ''}" for d in inputs]
    lines += ["", "Answer with the result of your part only."]
    return "\n".join(lines)


def _describe(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
