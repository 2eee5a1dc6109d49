"""A finished run's events rebuilt from the store, for clients following it later."""

from __future__ import annotations

from ..store.models import Run
from ..store.repositories import TenantRepos, to_message
from ..types import JSONObject, StopReason, Usage
from .event_codec import RunCompleted, RunStarted, RunStatus, encode_event

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
