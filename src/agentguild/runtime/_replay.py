"""A finished run's events rebuilt from the store, for clients following it later."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from ..security import Principal
from ..store.db import Database
from ..store.models import Run
from ..store.repositories import TenantRepos, to_message
from ..types import JSONObject, StopReason, Usage
from .event_codec import TERMINAL_STATUSES, RunCompleted, RunStarted, RunStatus, encode_event
from .events import EventBus

_PAGE = 500
_FINAL: dict[str, RunStatus] = {
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "interrupted": "interrupted",
}
_STOP: dict[RunStatus, StopReason] = {
    "completed": "completed",
    "failed": "error",
    "cancelled": "cancelled",
    "interrupted": "cancelled",
}


async def replay_stored_run(repos: TenantRepos, run: Run) -> list[JSONObject]:
    """`run_started`, a `message` per stored assistant/tool message of the run, and
    `run_completed` if the run has ended (text deltas and tool events are not stored)."""
    agent = ""
    if run.agent_id is not None:
        view = await repos.agents.get(run.agent_id)
        agent = view.name if view is not None else ""
    events = [encode_event(RunStarted(run.id, run.conversation_id, agent))]
    output = ""
    after: int | None = None
    while True:
        page = await repos.messages.list(run.conversation_id, limit=_PAGE, after_seq=after)
        for record in page.items:
            if record.run_id != run.id or record.role not in ("assistant", "tool"):
                continue
            message = to_message(record)
            if message.role == "assistant" and message.content:
                output = message.text
            event = {
                "type": "message",
                "data": {"message": message.to_openai(), "agent": agent, "seq": record.seq},
            }
            events.append(event)
        if page.next_cursor is None:
            break
        after = int(page.next_cursor)
    status = _FINAL.get(run.status)
    if status is not None:
        usage = Usage(run.prompt_tokens or 0, run.completion_tokens or 0)
        stop: StopReason = _STOP[status]
        events.append(encode_event(RunCompleted(run.id, status, output, usage, stop)))
    return events


async def follow_stored(
    db: Database, bus: EventBus, principal: Principal, run_id: str, after_seq: int
) -> AsyncGenerator[tuple[int, JSONObject], None] | None:
    """The events after `after_seq` of a run not executing in this process: from the event
    bus if it has them (or, for a shared bus, will: the run is active elsewhere); else
    replayed from the store (its messages, then its completion). None if the tenant has
    no such run."""
    async with db.repos(principal) as repos:
        run = await repos.runs.get(run_id)
        if run is None:
            return None
        ended = run.status in TERMINAL_STATUSES
        if (bus.shared and not ended) or await bus.has_run(run_id):
            if not ended:
                return bus.subscribe(run_id, after_seq)
            completion = (await replay_stored_run(repos, run))[-1]
            return ended_on_bus(bus.subscribe(run_id, after_seq), completion, after_seq)
        events = await replay_stored_run(repos, run)
    return replay_after(events, after_seq)


async def stored_result(
    db: Database, principal: Principal, run_id: str
) -> tuple[Run, str, list[JSONObject]] | None:
    """A run as stored, its output and the messages it added (OpenAI format), like a
    `wait` run's answer; None if the tenant has no such run."""
    async with db.repos(principal) as repos:
        run = await repos.runs.get(run_id)
        if run is None:
            return None
        events = await replay_stored_run(repos, run)
    messages = [event["data"]["message"] for event in events if event["type"] == "message"]
    last = events[-1]
    output = str(last["data"].get("output", "")) if last["type"] == "run_completed" else ""
    return run, output, messages


_BUS_IDLE_S = 2.0
"""How long a follower of an ended run waits on the bus for more before it concludes that
the run's log stops short of its end."""


async def ended_on_bus(
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


async def replay_after(
    events: list[JSONObject], after_seq: int
) -> AsyncGenerator[tuple[int, JSONObject], None]:
    for seq, event in enumerate(events, start=1):
        if seq > after_seq:
            yield seq, event
    if after_seq > len(events) and events and events[-1]["type"] == "run_completed":
        # A resumed client's numbering came from the live log, which had more events.
        yield after_seq + 1, events[-1]
