"""The runner: executes runs of agents on stored conversations.

`Runner.start` stores the run and its input, then runs the agent in its own asyncio task,
so a run does not depend on any client: streamed runs are cancelled when their last
follower leaves, awaited ones when their caller leaves, background ones never. Every
event is persisted as it happens (see `_recorder`) and published to the run's log, which
clients follow and resume (`RunHandle.events`). A run's status goes
`queued -> running -> completed | failed | cancelled`. Runs on one conversation take turns
(the `multitask` policy, see `_turns`). Each run names the instance executing it
(`owner`); runs whose owner died become `interrupted` (`recover`, run by every live
instance's heartbeat sweep), and a cancel request reaches the run's owner wherever it is
(`cancels`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

from .._aio import aclose, unbroken
from ..agents.base import Agent
from ..errors import AgentguildError
from ..security import Principal
from ..store.db import Database
from ..store.errors import NotFoundError, NotRunOwnerError
from ..store.models import Run
from ..store.usage_writer import UsageWriter
from ..types import ErrorEvent, Event, JSONObject, Message, MessageEvent
from ._background import RUN_JOB, run_job_key, run_job_payload
from ._history import close_open_tool_calls
from ._ownership import RunOwnership
from ._recorder import RunRecorder
from ._replay import follow_stored, stored_result
from ._resume import in_flight_rows, resume_steps
from ._turns import ConversationBusyError, MultitaskPolicy, store_run, wait_until_ended
from .agent_factory import bind_caller, run_events
from .cancels import CancelChannel
from .catalog import AgentCatalog, CatalogEntry
from .event_codec import TERMINAL_STATUSES, RunStatus, encode_event
from .events import EventBus, InProcessEventBus
from .instances import InstanceHeartbeat
from .limits import QuotaExceededError, RunLimitError, RunLimits, TenantLimits
from .queue import TaskQueue
from .run_registry import RunHandle, RunMode, RunRegistry
from .views import run_view

__all__ = [
    "ConversationBusyError",
    "MultitaskPolicy",
    "NoAgentError",
    "QuotaExceededError",
    "RunLimitError",
    "RunLimits",
    "Runner",
    "TenantLimits",
]

logger = logging.getLogger(__name__)

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
        instance: InstanceHeartbeat | None = None,
        cancels: CancelChannel | None = None,
        cancel_wait_s: float = 10.0,
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
        self.ownership = RunOwnership(
            db,
            self.registry,
            instance=instance,
            cancels=cancels,
            cancel_wait_s=cancel_wait_s,
            queue_owns_background=queue is not None,
        )
        """This process among the others: run owners, cancel requests, recovery, turns."""
        self.owner = self.ownership.owner
        """The id runs executing here are owned by."""
        self.cancels = self.ownership.cancels
        """Where cancel requests for runs executing elsewhere go (and come from)."""
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
        multitask: MultitaskPolicy = "enqueue",
    ) -> RunHandle:
        """Store a new run and its input messages, and start the agent on the conversation.

        The agent is `agent_id`, an id or a name (default: the conversation's agent).
        `multitask` says what happens if the conversation has active runs (see `_turns`).
        Raises `NotFoundError` (no such conversation or agent in the tenant),
        `NoAgentError`, `ConfigError` (the agent cannot be built here), `RunLimitError`,
        `QuotaExceededError` or `ConversationBusyError`.
        """
        entry = await self._agent_of(principal, conversation_id, agent_id)
        agent = entry.agent  # the agent can run here (else ConfigError) before anything stops
        await self.limits.check_tokens(principal)
        if multitask == "interrupt":
            await self.interrupt(principal, conversation_id)
        limits = await self.limits.limits(principal)
        return await self._start(
            principal, conversation_id, input_messages, entry, agent, mode, multitask, limits
        )

    async def _agent_of(
        self, principal: Principal, conversation_id: str, agent_id: str | None
    ) -> CatalogEntry:
        """The agent `agent_id` (an id or a name), default: the conversation's."""
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
        entry = await self.catalog.resolve(principal, agent_id)
        if entry is None:
            raise NotFoundError(f"agent {agent_id!r} not found")
        return entry

    async def _start(
        self,
        principal: Principal,
        conversation_id: str,
        input_messages: Sequence[Message],
        entry: CatalogEntry,
        agent: Agent,
        mode: RunMode,
        multitask: MultitaskPolicy,
        limits: RunLimits,
    ) -> RunHandle:
        to_queue = mode == "background" and self.queue is not None
        tenant = principal.tenant_id
        self._starting[tenant] += 1  # counted until its run is stored
        try:
            run, history = await store_run(
                self.db,
                principal,
                conversation_id,
                input_messages,
                entry,
                mode,
                multitask,
                limits,
                owner=None if to_queue else self.owner,
                starting=self._starting[tenant] - 1,
            )
        finally:
            self._starting[tenant] -= 1
            if not self._starting[tenant]:
                del self._starting[tenant]
        handle = RunHandle(
            run.id,
            tenant_id=run.tenant_id,
            conversation_id=conversation_id,
            agent=entry.name,
            mode=mode,
            log=self.events.run_log(run.id),
        )
        handle.view = run_view(run)
        if to_queue:
            assert self.queue is not None
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
            self._execute(handle, principal, agent, history), name=f"agentguild-run-{run.id}"
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
            run = await repos.runs.claim(run_id, self.owner)
            if run is None:
                if await repos.runs.get(run_id) is None:
                    raise NotFoundError(f"run {run_id!r} not found")
                return None
            history = await repos.messages.history(run.conversation_id)
            calls = await repos.tool_calls.list(run_id)
            for row in in_flight_rows(calls):
                await repos.tool_calls.finish(row.id, _WORKER_LOST, True, None)
        entry = None
        if run.agent_id is not None:
            entry = await self.catalog.at_version(principal, run.agent_id, run.agent_version)
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
        if run.pending_input is not None:  # its turn had not come yet: start it afresh
            todo = self._execute(handle, principal, entry.agent, None)
        else:
            steps = resume_steps(history, calls, self.catalog.factory.tools, entry.name)
            todo = self._execute(handle, principal, entry.agent, history, steps)
        handle.task = asyncio.create_task(
            todo,
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
        return await follow_stored(self.db, self.events, principal, run_id, after_seq)

    async def join(
        self, principal: Principal, run_id: str
    ) -> tuple[Run, str, list[JSONObject]] | None:
        """Wait until the run has ended, wherever it executes; the stored run, its output
        and the messages it added (OpenAI format). None if the tenant has no such run."""
        await wait_until_ended(self.db, principal, run_id, self.ownership.live)
        return await stored_result(self.db, principal, run_id)

    async def cancel(self, principal: Principal, run_id: str) -> Run | None:
        """Cancel the run and wait until it has stopped; returns the stored run (None if
        the tenant has none with this id). Finished runs are returned unchanged.

        A run executing in another process is sent a cancel request; if that process
        does not stop it within `cancel_wait_s`, the run is returned as it is. A run no
        live process executes (waiting for a queue worker, or its process died) is
        marked `cancelled` at once.
        """
        handle = self.live(principal, run_id)
        if handle is not None:
            handle.cancel()
            await handle.wait()
            return await self.get(principal, run_id)
        run = await self.get(principal, run_id)
        if run is None or run.status in TERMINAL_STATUSES:
            return run
        return await self.ownership.cancel_elsewhere(principal, run)

    async def interrupt(self, principal: Principal, conversation_id: str) -> list[str]:
        """Cancel every active run of the conversation (wherever it executes) and wait
        until they have stopped; their ids."""
        async with self.db.repos(principal) as repos:
            active = [run.id for run in await repos.runs.active(conversation_id)]
        await asyncio.gather(*(self.cancel(principal, run_id) for run_id in active))
        return active

    async def listen(self) -> None:
        """Take cancel requests for the runs executing here from every instance (call it
        once, at start)."""
        await self.ownership.listen()

    async def recover(self) -> int:
        """Mark the queued and running runs no live instance executes (their process
        died) `interrupted`; how many. Every live instance calls it on each heartbeat sweep.

        With a queue, background runs are left alone: queue workers own (and resume) them.
        """
        return await self.ownership.recover()

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
        history: list[Message] | None,
        resumed: AsyncIterator[Event] | None = None,
    ) -> None:
        """Run the agent on `history` (None: the run waits for its turn first)."""
        bind_caller(principal.tenant_id, principal.caller_id)
        recorder = RunRecorder(self.db, principal, handle, self.owner, self.usage_writer)
        status: RunStatus = "completed"
        error: str | None = None
        try:
            if history is None:
                history = await self.ownership.take_turn(handle, principal)
            await unbroken(recorder.started())
            if resumed is not None:
                async for step in resumed:
                    await unbroken(recorder.record(step))
                    if isinstance(step, MessageEvent):
                        history.append(step.message)
                history = close_open_tool_calls(history)
            events = run_events(agent, history, stream=True)
            try:
                async for event in events:
                    if recorder.stores(event):
                        await unbroken(recorder.record(event))
                    else:
                        await recorder.record(event)
            finally:
                await aclose(events)
        except asyncio.CancelledError:
            status = "interrupted" if self._closing else "cancelled"
            raise
        except NotRunOwnerError:
            status = "interrupted"  # taken over elsewhere: `finished` leaves its record alone
        except Exception as exc:
            status, error = "failed", _describe(exc)
            logger.warning("run.failed", exc_info=True, extra={"run_id": handle.run_id})
            if not isinstance(exc, AgentguildError):
                handle.log.append(encode_event(ErrorEvent("InternalError", error, handle.agent)))
        finally:
            await unbroken(self._finish(recorder, status, error))

    def _cancelled_before_start(self, handle: RunHandle, principal: Principal) -> None:
        # A task cancelled before its first step never runs its body (nor its `finally`).
        if not handle.done:
            status: RunStatus = "interrupted" if self._closing else "cancelled"
            recorder = RunRecorder(self.db, principal, handle, self.owner, self.usage_writer)
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


def _describe(exc: Exception) -> str:
    if isinstance(exc, AgentguildError):
        return f"{type(exc).__name__}: {exc}"
    return _INTERNAL_ERROR
