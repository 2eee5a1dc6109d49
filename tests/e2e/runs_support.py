"""Helpers of the run, OpenAI-compatibility, disconnect and crash tests: real servers.

SSE responses are read incrementally here, so these tests serve the app with a real
uvicorn (in this event loop, or in a subprocess) instead of httpx's ASGI transport,
which buffers whole responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from e2e_helpers import ADMIN_PASSWORD, UNLIMITED, bearer, login, unique
from pydantic import SecretStr

from agentguild._platform_settings import DatabaseSettings, SecuritySettings, ServerSettings
from agentguild.config import Settings
from agentguild.llm.base import ChatModel
from agentguild.server import create_app
from agentguild.tools import Tool

JWT_SECRET = "runs-e2e-" + "k" * 40


def settings_for(
    tmp_path: Path, models: Mapping[str, Any], *, database_url: str | None = None, **server: Any
) -> Settings:
    """Settings of a test server with these models, on `database_url` (default: a SQLite
    file in `tmp_path`)."""
    return Settings(
        models=dict(models),
        default_model=next(iter(models)),
        database=DatabaseSettings(
            url=database_url or f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}"
        ),
        security=SecuritySettings(
            jwt_secret=SecretStr(JWT_SECRET), admin_password=SecretStr(ADMIN_PASSWORD)
        ),
        server=ServerSettings(data_dir=str(tmp_path / "data"), **{**UNLIMITED, **server}),
    )


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    return sock


@dataclass
class LiveServer:
    """An app served by uvicorn in this event loop."""

    url: str
    app: Any

    @property
    def services(self) -> Any:
        return self.app.state.services


@contextlib.asynccontextmanager
async def serve(
    settings: Settings,
    model_provider: Callable[[str], ChatModel] | None = None,
    *,
    tools: Mapping[str, Tool] | None = None,
) -> AsyncIterator[LiveServer]:
    """The app on a real HTTP port (with `tools` instead of the built-in ones, if given).
    The socket listens before uvicorn starts, so clients can connect at once (their
    requests wait until the app is up)."""
    app = create_app(
        settings, model_provider=model_provider, tools=tools, on_first_start=lambda _: None
    )
    sock = _listening_socket()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield LiveServer(f"http://127.0.0.1:{sock.getsockname()[1]}", app)
    finally:
        server.should_exit = True
        await task
        sock.close()


_CHILD = """
import socket, sys, uvicorn
from agentguild.server.app import create_app
sock = socket.socket(fileno=int(sys.argv[1]))
config = uvicorn.Config(create_app(), log_level="warning", access_log=False, lifespan="on")
uvicorn.Server(config).run(sockets=[sock])
"""


@contextlib.contextmanager
def serve_in_subprocess(
    env: Mapping[str, str], cwd: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`create_app()` (settings from `env` only) under uvicorn in a child process, on a
    socket that listens before the child starts; output goes to `cwd/server.log`. The
    child is killed (SIGKILL) after the block if still alive."""
    sock = _listening_socket()
    port = sock.getsockname()[1]
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGUILD_")}
    with (cwd / "server.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(sock.fileno())],
            env={**inherited, **env},
            cwd=cwd,
            pass_fds=(sock.fileno(),),
            stdout=log,
            stderr=log,
        )
    sock.close()  # the child has its own copy
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()


@dataclass
class Event:
    """One SSE message."""

    id: int | None
    type: str
    data: Any


async def sse_events(response: httpx.Response) -> AsyncIterator[Event]:
    """The SSE messages of a streamed response, as they arrive (comments skipped)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in fields:
                raw_id = fields.get("id")
                yield Event(
                    int(raw_id) if raw_id else None,
                    fields.get("event", "message"),
                    orjson.loads(fields["data"]) if fields["data"] != "[DONE]" else "[DONE]",
                )
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


@dataclass
class Tenant:
    """The bootstrap tenant's admin, logged in."""

    client: httpx.AsyncClient
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)

    async def agent(self, config: Mapping[str, Any], name: str | None = None) -> dict[str, Any]:
        body = {"name": name or unique("agent"), "config": dict(config)}
        response = await self.client.post("/api/agents", headers=self.headers, json=body)
        assert response.status_code == 201, response.text
        agent: dict[str, Any] = response.json()
        return agent

    async def conversation(self, agent_id: str) -> str:
        body = {"agent": agent_id, "title": "test"}
        response = await self.client.post("/api/conversations", headers=self.headers, json=body)
        assert response.status_code == 201, response.text
        conversation_id: str = response.json()["id"]
        return conversation_id

    async def api_key(self) -> str:
        response = await self.client.post(
            "/api/keys", headers=self.headers, json={"name": unique("key")}
        )
        assert response.status_code == 201, response.text
        key: str = response.json()["key"]
        return key

    async def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(
            f"/api/conversations/{conversation_id}/messages", headers=self.headers
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


async def admin(client: httpx.AsyncClient) -> Tenant:
    """The bootstrap admin of the server `client` talks to."""
    return Tenant(client, await login(client, "admin", ADMIN_PASSWORD))
