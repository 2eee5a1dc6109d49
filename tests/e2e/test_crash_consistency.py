"""Killing the server mid-run leaves a consistent conversation and an `interrupted` run.

A real server process runs an agent that calls a tool twice and then streams a long
answer slowly. Once the client has seen part of that answer, the process gets SIGKILL.
A new process on the same SQLite file must show: the run `interrupted`, only complete
messages (no trace of the half-streamed answer), no tool call left `running`, and a
conversation that a new run can continue.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from e2e_helpers import ADMIN_PASSWORD, UNLIMITED
from runs_support import JWT_SECRET, admin, serve_in_subprocess, sse_events

from agentguild.testing import FakeLLMServer, Reply

LONG_ANSWER = " ".join(f"word{n}" for n in range(200))


class Upstream:
    """Two tool calls, then a slowly streamed long answer; later runs get a short one."""

    def __init__(self) -> None:
        self.calls = 0
        self.killed = False

    def __call__(self, request: dict[str, Any]) -> Reply:
        self.calls += 1
        if self.killed:
            return Reply("Recovered.")
        if self.calls <= 2:
            return Reply.calling("calculator", {"expression": f"{self.calls}+1"})
        return Reply(LONG_ANSWER, chunk_latency=0.05)


@pytest_asyncio.fixture(loop_scope="session")
async def upstream() -> AsyncIterator[tuple[FakeLLMServer, Upstream]]:
    responder = Upstream()
    async with FakeLLMServer(responder=responder) as fake:
        yield fake, responder


def _env(tmp_path: Path, fake: FakeLLMServer) -> dict[str, str]:
    model = {"provider": "openai", "model": "fake-model", "base_url": fake.base_url}
    limits = {f"AGENTGUILD_SERVER__{k.upper()}": str(v) for k, v in UNLIMITED.items()}
    return {
        "AGENTGUILD_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}",
        "AGENTGUILD_SECURITY__JWT_SECRET": JWT_SECRET,
        "AGENTGUILD_SECURITY__ADMIN_PASSWORD": ADMIN_PASSWORD,
        "AGENTGUILD_SERVER__DATA_DIR": str(tmp_path / "data"),
        "AGENTGUILD_MODELS": json.dumps({"fake": model}),
        "AGENTGUILD_DEFAULT_MODEL": "fake",
        **limits,
    }


async def _run_until_killed(url: str, process: Any) -> tuple[str, str, list[str]]:
    """Start a streamed run, SIGKILL the server mid-answer; (conversation, run, texts seen)."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        tenant = await admin(client)
        agent = await tenant.agent({"model": "fake", "tools": ["calculator"]})
        conversation_id = await tenant.conversation(agent["id"])
        seen: list[str] = []
        run_id = ""
        body = {"input": "Count, then talk.", "mode": "stream"}
        path = f"/api/conversations/{conversation_id}/runs"
        try:
            async with client.stream("POST", path, headers=tenant.headers, json=body) as response:
                async for event in sse_events(response):
                    if event.type == "run_started":
                        run_id = event.data["run_id"]
                    if event.type == "text_delta":
                        seen.append(event.data["text"])
                        if len(seen) == 3:
                            process.send_signal(signal.SIGKILL)
        except httpx.HTTPError:
            pass  # the connection died with the server, as intended
        return conversation_id, run_id, seen


async def test_a_killed_server_leaves_complete_messages_and_an_interrupted_run(
    tmp_path: Path, upstream: tuple[FakeLLMServer, Upstream]
) -> None:
    fake, responder = upstream
    env = _env(tmp_path, fake)
    with serve_in_subprocess(env, tmp_path) as (url, process):
        conversation_id, run_id, seen = await _run_until_killed(url, process)
        await asyncio.to_thread(process.wait)
    assert len(seen) == 3
    responder.killed = True

    with serve_in_subprocess(env, tmp_path) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            tenant = await admin(client)
            run = (await client.get(f"/api/runs/{run_id}", headers=tenant.headers)).json()
            messages = await tenant.messages(conversation_id)
            resumed = await client.post(
                f"/api/conversations/{conversation_id}/runs",
                headers=tenant.headers,
                json={"input": "Are you there?", "mode": "wait"},
            )

    assert run["status"] == "interrupted"
    assert run["error"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "tool"]
    assert all("word" not in json.dumps(m["content"]) for m in messages)
    calls = [c["id"] for m in messages if m["role"] == "assistant" for c in m["tool_calls"]]
    assert [m["tool_call_id"] for m in messages if m["role"] == "tool"] == calls
    assert [m["content"] for m in messages if m["role"] == "tool"] == ["2", "3"]
    with sqlite3.connect(tmp_path / "crash.db") as db:
        statuses = {row[0] for row in db.execute("SELECT status FROM tool_calls")}
    assert statuses == {"completed"}
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["run"]["status"] == "completed"
    assert resumed.json()["output"] == "Recovered."
    sent = fake.requests[-1]["messages"]
    assert [m["role"] for m in sent][-2:] == ["tool", "user"]
