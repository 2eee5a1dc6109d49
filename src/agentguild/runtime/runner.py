"""The runner: executes runs of agents on stored conversations.

`Runner.start` stores the run and its input, then runs the agent in its own asyncio task,
so a run does not depend on any client: streamed runs are cancelled when their last
follower leaves, awaited ones when their caller leaves, background ones never. Every
event is persisted as it happens (see `_recorder`) and published to the run's log, which
clients follow and resume (`RunHandle.events`). A run's status goes
`queued -> running -> completed | failed | cancelled`; runs a dead process left behind
become `interrupted` at the next start (`recover`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from typing import TypeVar

from ..agents.base import Agent
from ..errors import AgentguildError
from ..security import Principal
from ..store.db import Database
from ..store.errors import NotFoundError
from ..store.models import Run
from ..store.repositories.runs import mark_interrupted
from ..store.usage_writer import UsageWriter
from ..types import ErrorEvent, Event, JSONObject, Message, MessageEvent
from ._background import RUN_JOB, run_job_key, run_job_payload
from ._history import close_open_tool_calls
from ._recorder import RunRecorder
from ._replay import replay_stored_run
from ._resume import in_flight_rows, resume_steps
from .agent_factory import bind_caller, run_events
from .catalog import AgentCatalog
from .event_codec import TERMINAL_STATUSES, RunStatus, encode_event
from .events import EventBus, InProcessEventBus
from .limits import QuotaExceededError, RunLimitError, RunLimits, TenantLimits
from .queue import TaskQueue
from .run_registry import RunHandle, RunMode, RunRegistry
from .views import run_view

__all__ = [
    "NoAgentError",
    "QuotaExceededError",
    "RunLimitError",
    "RunLimits",
    "Runner",
    "TenantLimits",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

_INTERNAL_ERROR = "the run failed because of an internal error"
_WORKER_LOST = "Error: the worker running this tool call stopped before it finished."


class NoAgentError(AgentguildError):
    """The run names no agent and its conversation has none."""


class Runner:
    """Starts, follows and cancels runs; persists everything they do."""

    def __init__(
        self,
        db: Database,
        catalog: AgentCatalog,
        *,
        usage_writer: UsageWriter | None = None,
        registry: RunRegistry | None = None,
        limits: RunLimits | TenantLimits | None = None,
        events: EventBus | None = None,
        queue: TaskQueue | None = None,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.usage_writer = usage_writer
        self.registry = registry or RunRegistry()
        self.events: EventBus = events if events is not None else InProcessEventBus()
        """Where every run's events go (in-process, or Redis Streams shared by instances)."""
        self.queue = queue
        """Where background runs go (queue workers execute them: `run.execute` jobs);
        None: they run in this process like the others."""
        self.limits = limits if isinstance(limits, TenantLimits) else TenantLimits(db, limits)
        """Per-tenant limits (active runs, monthly tokens), cached."""
        self._starting: Counter[str] = Counter()
        self._closing = False
        self._finishing: set[asyncio.Future[None]] = set()

    async def start(
        self,
        principal: Principal,
        conversation_id: str,
        input_messages: Sequence[Message],
        *,
        agent_id: str | None = None,
        mode: RunMode = "stream",
    ) -> RunHandle:
        """Store a new run and its input messages, and start the agent on the conversation.

        The agent is `agent_id`, an id or a name (default: the conversation's agent). Raises
        `NotFoundError` (no such conversation or agent in the tenant), `NoAgentError`,
        `ConfigError` (the agent cannot be built here), `RunLimitError` or
        `QuotaExceededError`.
        """
        tenant = principal.tenant_id
        limit = (await self.limits.limits(principal)).max_active_runs
        active = self.registry.count_active(tenant) + self._starting[tenant]
        if active >= limit:
            raise RunLimitError(
                f"this tenant already has {active} active runs (limit {limit}); "
                "wait for one to finish or cancel one"
            )
        await self.limits.check_tokens(principal)
        self._starting[tenant] += 1
        try:
            return await self._start(principal, conversation_id, input_messages, agent_id, mode)
        finally:
            self._starting[tenant] -= 1
            if not self._starting[tenant]:
                del self._starting[tenant]

    async def _start(
        self,
        principal: Principal,
        conversation_id: str,
        input_messages: Sequence[Message],
        agent_id: str | None,
        mode: RunMode,
    ) -> RunHandle:
        if agent_id is None:
            async with self.db.repos(principal) as repos:
                conversation = await repos.conversations.get(conversation_id)
            if conversation is None:
                raise NotFoundError(f"conversation {conversation_id!r} not found")
            agent_id = conversation.agent_id
            if agent_id is None:
                raise NoAgentError(
                    f"conversation {conversation_id!r} has no agent; name one with `agent_id`"
                )
        entry = await self.catalog.get(principal, agent_id) or await self.catalog.by_name(
            principal, agent_id
        )
        if entry is None:
            raise NotFoundError(f"agent {agent_id!r} not found")
        agent = entry.agent
        async with self.db.repos(principal) as repos:
            run = await repos.runs.create(
                conversation_id, entry.id, entry.version, principal.user_id, mode
            )
            await repos.messages.append(conversation_id, list(input_messages), run_id=run.id)
            history = await repos.messages.history(conversation_id)
        handle = RunHandle(
            run.id,
            tenant_id=run.tenant_id,
            conversation_id=conversation_id,
            agent=entry.name,
            mode=mode,
            log=self.events.run_log(run.id),
        )
        handle.view = run_view(run)
        if mode == "background" and self.queue is not None:
            # A queue worker runs it (`Runner.resume`); its events come over the event bus.
            await self.queue.enqueue(
                RUN_JOB,
                run_job_payload(principal, run.id),
                idempotency_key=run_job_key(run.id),
                tenant_id=run.tenant_id,
            )
            return handle
        self.registry.add(handle)
        handle.task = asyncio.create_task(
            self._execute(handle, principal, agent, close_open_tool_calls(history)),
            name=f"agentguild-run-{run.id}",
        )
        handle.task.add_done_callback(lambda _: self._cancelled_before_start(handle, principal))
        return handle

    async def resume(self, principal: Principal, run_id: str) -> RunHandle | None:
        """Continue a stored run from its last persisted step (a queue worker took it over
        from one that died, or runs a queued background run); None if it is finished.

        Completed tool calls are never executed again; see `_resume` for calls in flight.
        Raises `NotFoundError` if the tenant has no such run or its agent is gone.
        """
        async with self.db.repos(principal) as repos:
            run = await repos.runs.get(run_id)
            if run is None:
                raise NotFoundError(f"run {run_id!r} not found")
            if run.status in ("completed", "failed", "cancelled"):
                return None
            history = await repos.messages.history(run.conversation_id)
            calls = await repos.tool_calls.list(run_id)
            for row in in_flight_rows(calls):
                await repos.tool_calls.finish(row.id, _WORKER_LOST, True, None)
        entry = None if run.agent_id is None else await self.catalog.get(principal, run.agent_id)
        if entry is None:
            raise NotFoundError(f"agent {run.agent_id!r} of run {run_id!r} not found")
        handle = RunHandle(
            run.id,
            tenant_id=run.tenant_id,
            conversation_id=run.conversation_id,
            agent=entry.name,
            mode="background" if run.mode == "background" else "wait",
            log=await self.events.resume_log(run.id),  # numbered after a dead worker's events
        )
        handle.view = run_view(run)
        self.registry.add(handle)
        steps = resume_steps(history, calls, self.catalog.factory.tools, entry.name)
        handle.task = asyncio.create_task(
            self._execute(handle, principal, entry.agent, history, steps),
            name=f"agentguild-run-{run.id}",
        )
        handle.task.add_done_callback(lambda _: self._cancelled_before_start(handle, principal))
        return handle

    def live(self, principal: Principal, run_id: str) -> RunHandle | None:
        """The run if it runs (or recently ran) in this process and is the caller's tenant's."""
        return self.registry.get(run_id, principal.tenant_id)

    async def get(self, principal: Principal, run_id: str) -> Run | None:
        """The stored run, or None if the tenant has no such run."""
        async with self.db.repos(principal) as repos:
            return await repos.runs.get(run_id)

    async def follow(
        self, principal: Principal, run_id: str, after_seq: int = 0
    ) -> AsyncGenerator[tuple[int, JSONObject], None] | None:
        """The run's events after `after_seq`: live if it runs here; else from the event bus
        if it has them (or, for a shared bus, will: the run is active elsewhere); else
        replayed from the store (its messages, then its completion). None if the tenant
        has no such run."""
        handle = self.live(principal, run_id)
        if handle is not None:
            return handle.events(after_seq)
        async with self.db.repos(principal) as repos:
            run = await repos.runs.get(run_id)
            if run is None:
                return None
            ended = run.status in TERMINAL_STATUSES
            if (self.events.shared and not ended) or await self.events.has_run(run_id):
                if not ended:
                    return self.events.subscribe(run_id, after_seq)
                completion = (await replay_stored_run(repos, run))[-1]
                events_after = self.events.subscribe(run_id, after_seq)
                return _ended_on_bus(events_after, completion, after_seq)
            events = await replay_stored_run(repos, run)
        return _replay(events, after_seq)

    async def cancel(self, principal: Principal, run_id: str) -> Run | None:
        """Cancel the run and wait until it has stopped; returns the stored run (None if
        the tenant has none with this id). Finished runs are returned unchanged."""
        handle = self.live(principal, run_id)
        if handle is not None:
            handle.cancel()
            await handle.wait()
        async with self.db.repos(principal) as repos:
            run = await repos.runs.get(run_id)
            if run is not None and handle is None and run.status not in TERMINAL_STATUSES:
                # No process is running it any more (its server died before it was marked).
                run = await repos.runs.set_status(run_id, "cancelled")
        return run

    async def recover(self) -> int:
        """At start: mark runs left `running` by a dead process `interrupted`; how many.

        With a queue, background runs are left alone: queue workers own (and resume) them.
        """
        if self.queue is not None:
            async with self.db.session() as session:
                count = await mark_interrupted(session, Run.mode != "background")
        else:
            async with self.db.system() as system:
                count = await system.mark_interrupted_runs()
        if count:
            logger.warning("runs.interrupted", extra={"count": count})
        return count

    async def aclose(self) -> None:
        """Stop every active run (marked `interrupted`) and wait for them to be recorded."""
        self._closing = True
        handles = self.registry.active()
        for handle in handles:
            handle.cancel()
        await asyncio.gather(*(handle.wait() for handle in handles))

    async def _execute(
        self,
        handle: RunHandle,
        principal: Principal,
        agent: Agent,
        history: list[Message],
        resumed: AsyncIterator[Event] | None = None,
    ) -> None:
        bind_caller(principal.tenant_id, principal.caller_id)
        recorder = RunRecorder(self.db, principal, handle, self.usage_writer)
        status: RunStatus = "completed"
        error: str | None = None
        try:
            await _unbroken(recorder.started())
            if resumed is not None:
                async for step in resumed:
                    await _unbroken(recorder.record(step))
                    if isinstance(step, MessageEvent):
                        history.append(step.message)
                history = close_open_tool_calls(history)
            events = run_events(agent, history, stream=True)
            try:
                async for event in events:
                    if recorder.stores(event):
                        await _unbroken(recorder.record(event))
                    else:
                        await recorder.record(event)
            finally:
                await _aclose(events)
        except asyncio.CancelledError:
            status = "interrupted" if self._closing else "cancelled"
            raise
        except Exception as exc:
            status, error = "failed", _describe(exc)
            logger.warning("run.failed", exc_info=True, extra={"run_id": handle.run_id})
            if not isinstance(exc, AgentguildError):
                handle.log.append(encode_event(ErrorEvent("InternalError", error, handle.agent)))
        finally:
            await _unbroken(self._finish(recorder, status, error))

    def _cancelled_before_start(self, handle: RunHandle, principal: Principal) -> None:
        # A task cancelled before its first step never runs its body (nor its `finally`).
        if not handle.done:
            status: RunStatus = "interrupted" if self._closing else "cancelled"
            recorder = RunRecorder(self.db, principal, handle, self.usage_writer)
            finishing = asyncio.ensure_future(self._finish(recorder, status, None))
            self._finishing.add(finishing)  # a strong reference until it is done
            finishing.add_done_callback(self._finishing.discard)

    async def _finish(self, recorder: RunRecorder, status: RunStatus, error: str | None) -> None:
        handle = recorder.handle
        try:
            await recorder.finished(status, error)
        except Exception:
            logger.exception("run.finish_failed", extra={"run_id": handle.run_id})
            if not handle.done:
                handle.finish(status, error=error)
        self.registry.finished(handle)


async def _unbroken(write: Awaitable[T]) -> T:
    """Await a database write that cancelling the run must not interrupt half-way (a
    transaction cut off mid-commit can hold SQLite's write lock); a cancellation arriving
    meanwhile is raised once the write is done."""
    task = asyncio.ensure_future(write)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


async def _aclose(events: AsyncIterator[Event]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()


def _describe(exc: Exception) -> str:
    if isinstance(exc, AgentguildError):
        return f"{type(exc).__name__}: {exc}"
    return _INTERNAL_ERROR


_BUS_IDLE_S = 2.0
"""How long a follower of an ended run waits on the bus for more before it concludes that
the run's log stops short of its end."""


async def _ended_on_bus(
    events: AsyncGenerator[tuple[int, JSONObject], None], completion: JSONObject, after_seq: int
) -> AsyncGenerator[tuple[int, JSONObject], None]:
    """An ended run's events from the bus; if its log stops short of `run_completed` (the
    process running it died), the stored `completion` ends it."""
    seq = after_seq
    try:
        while True:
            try:
                seq, event = await asyncio.wait_for(anext(events), _BUS_IDLE_S)
            except StopAsyncIteration:
                return
            except TimeoutError:
                yield seq + 1, completion
                return
            yield seq, event
    finally:
        await events.aclose()


async def _replay(
    events: list[JSONObject], after_seq: int
) -> AsyncGenerator[tuple[int, JSONObject], None]:
    for seq, event in enumerate(events, start=1):
        if seq > after_seq:
            yield seq, event
    if after_seq > len(events) and events and events[-1]["type"] == "run_completed":
        # A resumed client's numbering came from the live log, which had more events.
        yield after_seq + 1, events[-1]
