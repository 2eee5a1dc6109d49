"""Planned tasks over HTTP: create, follow to completion, list, cancel, tenant walls.

The app's models are test doubles: `Team` plans three independent subtasks and one that
depends on them, answers the independent ones only once all three are being worked on
at the same time (so a completed task proves they overlapped), and merges; `Blocking`
never answers, so a task on it stays running until cancelled. Waiting uses the task
manager's own signal, never sleeps.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from e2e_helpers import (
    ADMIN_PASSWORD,
    PASSWORD,
    asgi_client,
    assert_error,
    bearer,
    login,
    unique,
)
from runs_support import settings_for

from agentguild.llm.base import ChatChunk, ChatModel, ChatRequest, ChatResponse
from agentguild.security import Principal, Role
from agentguild.server import create_app
from agentguild.tasks import PLANNER_PROMPT, SYNTHESISER_PROMPT
from agentguild.types import Message, Usage

SCRIPTED = {"provider": "scripted", "replies": ["unused"]}
FINISHED = {"completed", "failed", "cancelled"}
PLAN = {
    "subtasks": [
        {"id": "facts", "title": "find the facts", "category": "research", "depends_on": []},
        {"id": "sample", "title": "write a sample", "category": "code", "depends_on": []},
        {"id": "costs", "title": "estimate costs", "category": "analysis", "depends_on": []},
        {
            "id": "verdict",
            "title": "give a verdict",
            "category": "analysis",
            "depends_on": ["facts", "sample", "costs"],
        },
    ]
}
INDEPENDENT = ("facts", "sample", "costs")


class Team:
    """Planner, specialists and synthesiser in one model, by the request's system prompt."""

    name = "team"

    def __init__(self) -> None:
        self.together = asyncio.Barrier(len(INDEPENDENT))

    async def complete(self, request: ChatRequest) -> ChatResponse:
        system, prompt = request.messages[0].text, request.messages[-1].text
        if system.startswith(PLANNER_PROMPT[:30]):
            text = json.dumps(PLAN)
        elif system == SYNTHESISER_PROMPT:
            text = "merged: " + " | ".join(
                line for line in prompt.splitlines() if line.startswith("did ")
            )
        else:
            part = next(line for line in prompt.splitlines() if line.startswith("Your part"))
            if "Results you can build on" not in prompt:
                await self.together.wait()  # the independent subtasks meet here
            text = "did " + part.split(": ", 1)[1]
        return ChatResponse(Message.assistant(text), usage=Usage(5, 3))

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        response = await self.complete(request)
        yield ChatChunk(text=response.message.text, usage=response.usage)


class Blocking:
    """Never answers; `started` is set when a call begins."""

    name = "blocking"

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        await self.complete(request)
        yield ChatChunk()


@dataclass
class Server:
    app: Any
    client: httpx.AsyncClient
    team: Team
    blocking: Blocking
    tenant_id: str
    admin: dict[str, str]
    """Headers of the bootstrap tenant's admin."""
    foreign: dict[str, str]
    """Headers of an admin of another tenant."""

    async def finished(self, task_id: str) -> dict[str, Any]:
        """The task, read over HTTP, once it has finished (bounded: the manager signals
        the end, at most 30 s)."""
        manager = self.app.state.services.tasks.manager
        for _ in range(3):
            response = await self.client.get(f"/api/tasks/{task_id}", headers=self.admin)
            assert response.status_code == 200, response.text
            task: dict[str, Any] = response.json()
            if task["status"] in FINISHED:
                return task
            await asyncio.wait_for(manager.wait(task_id, tenant_id=self.tenant_id), 30)
        raise AssertionError(f"task {task_id} did not finish")

    async def create(self, **body: Any) -> dict[str, Any]:
        response = await self.client.post("/api/tasks", headers=self.admin, json=body)
        assert response.status_code == 202, response.text
        assert response.headers["location"] == f"/api/tasks/{response.json()['id']}"
        task: dict[str, Any] = response.json()
        return task


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    tmp: Path = tmp_path_factory.mktemp("tasks")
    team, blocking = Team(), Blocking()
    models: dict[str, ChatModel] = {"team": team, "blocking": blocking}
    settings = settings_for(tmp, {"team": SCRIPTED, "blocking": SCRIPTED})
    app = create_app(settings, model_provider=models.__getitem__, on_first_start=lambda _: None)
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        services = app.state.services
        async with services.db.system() as system:
            home = await system.tenant_by_name("default")
            other = await system.create_tenant(unique("far"))
        async with services.db.repos(Principal(other.id, Role.ADMIN)) as repos:
            stranger = await repos.users.create(unique("stranger"), PASSWORD, Role.ADMIN)
        admin = bearer(await login(client, "admin", ADMIN_PASSWORD))
        foreign = bearer(await login(client, stranger.username, PASSWORD))
        yield Server(app, client, team, blocking, home.id, admin, foreign)


async def test_a_task_is_planned_run_in_parallel_merged_and_stored(server: Server) -> None:
    created = await server.create(input="Should we write the service in Go?", priority=2)

    task = await server.finished(created["id"])

    assert created["status"] == "pending"
    assert (created["agent_id"], created["priority"], created["subtasks"]) == (None, 2, [])
    assert task["status"] == "completed", task
    assert task["error"] is None
    subtasks = {s["id"]: s for s in task["subtasks"]}
    assert [s["id"] for s in task["subtasks"]] == [*INDEPENDENT, "verdict"]
    assert [(s["category"], s["specialist"]) for s in task["subtasks"]] == [
        ("research", "researcher"),
        ("code", "coder"),
        ("analysis", "analyst"),
        ("analysis", "analyst"),
    ]
    for subtask in task["subtasks"]:
        assert subtask["status"] == "completed"
        assert subtask["result"] == f"did {subtask['title']}"
        assert (subtask["error"], subtask["attempts"]) == (None, 1)
        assert subtask["started_at"] <= subtask["finished_at"]
    assert task["result"] == "merged: " + " | ".join(f"did {s['title']}" for s in task["subtasks"])
    # The independent subtasks overlapped: all started before any ended; the verdict
    # started after its three dependencies had ended.
    marks = [(m["subtask_id"], m["kind"]) for m in task["timeline"]]
    assert {m for m in marks[:3]} == {(i, "start") for i in INDEPENDENT}
    assert {m for m in marks[3:6]} == {(i, "end") for i in INDEPENDENT}
    assert marks[6:] == [("verdict", "start"), ("verdict", "end")]
    starts = [subtasks[i]["started_at"] for i in INDEPENDENT]
    ends = [subtasks[i]["finished_at"] for i in INDEPENDENT]
    assert max(starts) <= min(ends)
    assert subtasks["verdict"]["started_at"] >= max(ends)
    assert task["usage"]["completion_tokens"] > 0
    assert task["created_at"] <= task["started_at"] <= task["finished_at"]


async def test_task_model_calls_are_recorded_as_the_submitters_usage(server: Server) -> None:
    services = server.app.state.services
    since = datetime.now(UTC) - timedelta(seconds=1)
    created = await server.create(input="Count my tokens")
    task = await server.finished(created["id"])

    await services.usage_writer.flush()
    async with services.db.repos(Principal(server.tenant_id, Role.ADMIN)) as repos:
        totals = await repos.usage.summary(since)

    calls = len(task["subtasks"]) + 2  # the planner, each subtask, the synthesiser
    team_totals = [t for t in totals if t.model == "team"]
    assert team_totals
    assert team_totals[0].requests >= calls
    assert team_totals[0].completion_tokens >= task["usage"]["completion_tokens"]


async def test_a_running_task_can_be_cancelled(server: Server) -> None:
    config = {
        "kind": "planned",
        "specialists": {"research": "blocking", "code": "blocking", "analysis": "blocking"},
        "synthesiser": False,
    }
    agent = await server.client.post(
        "/api/agents",
        headers=server.admin,
        json={"name": unique("stuck"), "config": config},
    )
    assert agent.status_code == 201, agent.text
    server.blocking.started.clear()
    created = await server.create(input="This will hang", agent_id=agent.json()["name"])
    await asyncio.wait_for(server.blocking.started.wait(), 30)

    running = await server.client.get(f"/api/tasks/{created['id']}", headers=server.admin)
    cancelled = await server.client.post(f"/api/tasks/{created['id']}/cancel", headers=server.admin)
    stored = await server.finished(created["id"])

    assert created["agent_id"] == agent.json()["id"]
    assert running.json()["status"] == "running"
    assert "running" in {s["status"] for s in running.json()["subtasks"]}
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["error"]) == (
        "cancelled",
        "cancelled on request",
    )
    assert stored == cancelled.json()
    assert {s["status"] for s in stored["subtasks"]} == {"cancelled"}
    assert all(s["finished_at"] is not None for s in stored["subtasks"])


async def test_cancelling_a_finished_task_changes_nothing(server: Server) -> None:
    created = await server.create(input="Quick one")
    done = await server.finished(created["id"])

    response = await server.client.post(f"/api/tasks/{created['id']}/cancel", headers=server.admin)

    assert response.status_code == 200, response.text
    assert response.json() == done


async def test_tasks_list_newest_first_by_status_and_page_by_page(server: Server) -> None:
    ids = []
    for n in range(3):
        created = await server.create(input=f"Task number {n}")
        await server.finished(created["id"])
        ids.append(created["id"])
    newest = list(reversed(ids))

    first = await server.client.get("/api/tasks?limit=2", headers=server.admin)
    rest = await server.client.get(
        "/api/tasks", headers=server.admin, params={"cursor": first.json()["next_cursor"]}
    )
    completed = await server.client.get("/api/tasks?status=completed", headers=server.admin)
    pending = await server.client.get("/api/tasks?status=pending", headers=server.admin)

    assert [t["id"] for t in first.json()["items"]] == newest[:2]
    assert rest.json()["items"][0]["id"] == newest[2]
    assert "subtasks" not in first.json()["items"][0]
    assert set(ids) <= {t["id"] for t in completed.json()["items"]}
    assert pending.json()["items"] == []
    wrong = await server.client.get("/api/tasks?status=exploded", headers=server.admin)
    assert_error(wrong, 422, "validation_error")


async def test_another_tenants_task_does_not_exist_for_you(server: Server) -> None:
    created = await server.create(input="Private plans")
    await server.finished(created["id"])

    read = await server.client.get(f"/api/tasks/{created['id']}", headers=server.foreign)
    cancel = await server.client.post(f"/api/tasks/{created['id']}/cancel", headers=server.foreign)
    listed = await server.client.get("/api/tasks", headers=server.foreign)

    assert_error(read, 404, "not_found")
    assert_error(cancel, 404, "not_found")
    assert created["id"] not in listed.text
    still = await server.client.get(f"/api/tasks/{created['id']}", headers=server.admin)
    assert still.json()["status"] == "completed"


@pytest.mark.parametrize(
    ("body", "status", "error_type"),
    [
        ({"input": ""}, 422, "validation_error"),
        ({"input": "   "}, 422, "validation_error"),
        ({"input": "x", "priority": 10**6}, 422, "validation_error"),
        ({"input": "x", "timeout_s": 0}, 422, "validation_error"),
        ({"input": "x", "agent_id": "no-such-agent"}, 404, "not_found"),
        ({"input": "x", "agent_id": "assistant"}, 400, "not_a_planned_agent"),
    ],
)
async def test_bad_task_requests_are_refused(
    server: Server, body: dict[str, Any], status: int, error_type: str
) -> None:
    response = await server.client.post("/api/tasks", headers=server.admin, json=body)

    assert_error(response, status, error_type)


async def test_a_planned_agent_also_answers_a_conversation_run(server: Server) -> None:
    agent = await server.client.post(
        "/api/agents",
        headers=server.admin,
        json={"name": unique("crew"), "config": {"kind": "planned"}},
    )
    assert agent.status_code == 201, agent.text
    conversation = await server.client.post(
        "/api/conversations", headers=server.admin, json={"agent": agent.json()["id"]}
    )
    assert conversation.status_code == 201, conversation.text

    run = await server.client.post(
        f"/api/conversations/{conversation.json()['id']}/runs",
        headers=server.admin,
        json={"input": "Plan my week", "mode": "wait"},
    )

    assert run.status_code == 200, run.text
    assert run.json()["run"]["status"] == "completed"
    assert run.json()["output"].startswith("merged: did find the facts")
