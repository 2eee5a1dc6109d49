"""Run events across API instances: two real server processes share one SQLite file and one
Redis (the event bus). A background run started through instance A is streamed completely
through instance B, and a client that hops between instances with `Last-Event-ID` gets
every event exactly once.

Needs Redis (database 13): skipped when it is unreachable, except under `CI=true`, where
the test fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from e2e_helpers import ADMIN_PASSWORD, UNLIMITED
from runs_support import (
    JWT_SECRET,
    Event,
    Tenant,
    admin,
    serve,
    serve_in_subprocess,
    settings_for,
    sse_events,
)

from agentguild.testing import FakeLLMServer, Reply

REDIS_URL = os.environ.get("AGENTGUILD_TEST_EVENTS_REDIS_URL", "redis://127.0.0.1:6379/13")
WORDS = [f"word{n}" for n in range(40)]
ANSWER = " ".join(WORDS)


@pytest.fixture(scope="module")
def redis_url() -> str:
    """The machine's Redis for the shared event bus (skip, or fail under CI, if down)."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1.0):
            return REDIS_URL
    except OSError as exc:
        message = f"Redis is not reachable at 127.0.0.1:6379 ({exc})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest_asyncio.fixture(loop_scope="session")
async def fake() -> AsyncIterator[FakeLLMServer]:
    """A model that streams a 40-word answer slowly, so runs last about a second."""
    async with FakeLLMServer(responder=lambda _: Reply(ANSWER, chunk_latency=0.03)) as server:
        yield server


def _env(tmp_path: Path, fake: FakeLLMServer, redis_url: str) -> dict[str, str]:
    model = {"provider": "openai", "model": "fake-model", "base_url": fake.base_url}
    limits = {f"AGENTGUILD_SERVER__{k.upper()}": str(v) for k, v in UNLIMITED.items()}
    return {
        "AGENTGUILD_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}",
        "AGENTGUILD_SECURITY__JWT_SECRET": JWT_SECRET,
        "AGENTGUILD_SECURITY__ADMIN_PASSWORD": ADMIN_PASSWORD,
        "AGENTGUILD_SERVER__DATA_DIR": str(tmp_path / "data"),
        "AGENTGUILD_SERVER__REDIS_URL": redis_url,
        "AGENTGUILD_SERVER__EVENT_BUS": "redis",
        "AGENTGUILD_SERVER__EVENT_STREAM_TTL_S": "300",
        "AGENTGUILD_MODELS": json.dumps({"fake": model}),
        "AGENTGUILD_DEFAULT_MODEL": "fake",
        **limits,
    }


@dataclass
class Servers:
    url_a: str
    url_b: str
    process_a: subprocess.Popen[bytes]


class Instances:
    """Clients of instances A and B, logged in as the same admin."""

    def __init__(self, a: Tenant, b: Tenant) -> None:
        self.a = a
        self.b = b

    async def background_run(self) -> str:
        """Start a background run through A; its id."""
        agent = await self.a.agent({"model": "fake"})
        conversation_id = await self.a.conversation(agent["id"])
        response = await self.a.client.post(
            f"/api/conversations/{conversation_id}/runs",
            headers=self.a.headers,
            json={"input": "Talk for a while.", "mode": "background"},
        )
        assert response.status_code == 202, response.text
        run_id: str = response.json()["run"]["id"]
        return run_id


@pytest.fixture
def servers(tmp_path: Path, fake: FakeLLMServer, redis_url: str) -> Iterator[Servers]:
    """URLs of instances A and B (B's process starts once A's has migrated the database)."""
    env = _env(tmp_path, fake, redis_url)
    with ExitStack() as stack:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        url_a, process_a = stack.enter_context(serve_in_subprocess(env, tmp_path / "a"))
        # B must not start before A is up: both would migrate the new database at once.
        with httpx.Client(base_url=url_a, timeout=60) as client:
            assert client.get("/health").status_code == 200
        url_b, _ = stack.enter_context(serve_in_subprocess(env, tmp_path / "b"))
        yield Servers(url_a, url_b, process_a)


@pytest_asyncio.fixture(loop_scope="session")
async def instances(servers: Servers) -> AsyncIterator[Instances]:
    async with (
        httpx.AsyncClient(base_url=servers.url_a, timeout=60) as client_a,
        httpx.AsyncClient(base_url=servers.url_b, timeout=60) as client_b,
    ):
        yield Instances(await admin(client_a), await admin(client_b))


async def _stream(
    tenant: Tenant, run_id: str, last_event_id: int | None = None, limit: int | None = None
) -> list[Event]:
    """The run's events from one instance (after `last_event_id`), at most `limit`."""
    headers = dict(tenant.headers)
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    events: list[Event] = []
    path = f"/api/runs/{run_id}/stream"
    async with tenant.client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        async for event in sse_events(response):
            events.append(event)
            if limit is not None and len(events) == limit:
                break  # the client disconnects
    return events


def _text(events: list[Event]) -> str:
    return "".join(e.data["text"] for e in events if e.type == "text_delta")


async def test_a_run_started_on_one_instance_streams_completely_from_another(
    instances: Instances,
) -> None:
    run_id = await instances.background_run()

    path = f"/api/runs/{run_id}/stream"
    events: list[Event] = []
    status_while_streaming: Any = None
    b = instances.b
    async with b.client.stream("GET", path, headers=b.headers) as response:
        assert response.status_code == 200
        async for event in sse_events(response):
            events.append(event)
            if event.type == "text_delta" and status_while_streaming is None:
                run = await b.client.get(f"/api/runs/{run_id}", headers=b.headers)
                status_while_streaming = run.json()["status"]
    from_a = await _stream(instances.a, run_id)

    assert status_while_streaming == "running"  # B relayed the run live
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == "run_started"
    assert events[0].data["run_id"] == run_id
    assert events[-1].type == "run_completed"
    assert events[-1].data["status"] == "completed"
    assert _text(events) == ANSWER
    assert [(e.id, e.type, e.data) for e in events] == [(e.id, e.type, e.data) for e in from_a]


async def test_a_client_hopping_between_instances_gets_each_event_exactly_once(
    instances: Instances,
) -> None:
    run_id = await instances.background_run()

    first = await _stream(instances.b, run_id, limit=4)  # B relays from the bus
    second = await _stream(instances.a, run_id, first[-1].id, limit=4)  # A runs it
    rest = await _stream(instances.b, run_id, second[-1].id)
    seen = first + second + rest
    replay = await _stream(instances.b, run_id)  # the finished run, replayed from the bus

    seqs = [e.id for e in seen]
    assert seqs == list(range(1, len(seen) + 1))  # each seq exactly once, in order
    assert seen[-1].type == "run_completed"
    assert _text(seen) == ANSWER
    assert [(e.id, e.type, e.data) for e in seen] == [(e.id, e.type, e.data) for e in replay]


def _dead_redis_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"  # nothing listens there any more


async def test_a_run_completes_and_streams_locally_while_redis_is_down(
    tmp_path: Path, fake: FakeLLMServer
) -> None:
    model = {"provider": "openai", "model": "fake-model", "base_url": fake.base_url}
    settings = settings_for(
        tmp_path, {"fake": model}, redis_url=_dead_redis_url(), event_bus="redis"
    )
    async with serve(settings) as live, httpx.AsyncClient(base_url=live.url, timeout=60) as client:
        tenant = await admin(client)
        agent = await tenant.agent({"model": "fake"})
        conversation_id = await tenant.conversation(agent["id"])
        path = f"/api/conversations/{conversation_id}/runs"
        body = {"input": "Talk.", "mode": "stream"}
        async with client.stream("POST", path, headers=tenant.headers, json=body) as response:
            events = [event async for event in sse_events(response)]
        metrics = (await client.get("/metrics", headers=tenant.headers)).text
        bus = live.services.runner.events

    assert events[-1].type == "run_completed"
    assert events[-1].data["status"] == "completed"
    assert _text(events) == ANSWER
    assert bus.stats.write_errors >= 1  # counted (and logged), never raised into the run
    assert "agentguild_event_bus_write_errors_total" in metrics
    assert bus.stats.dropped >= len(events)  # still unwritten at shutdown: counted, logged


async def test_following_a_run_whose_instance_died_ends_with_its_stored_status(
    servers: Servers, instances: Instances
) -> None:
    run_id = await instances.background_run()
    seen = await _stream(instances.b, run_id, limit=4)
    servers.process_a.send_signal(signal.SIGKILL)
    await asyncio.to_thread(servers.process_a.wait)
    cancelled = await instances.b.client.post(
        f"/api/runs/{run_id}/cancel", headers=instances.b.headers
    )  # B finds A's process gone (same host): A's run was interrupted, not cancelled

    rest = await _stream(instances.b, run_id, seen[-1].id)

    assert cancelled.json()["status"] == "interrupted"
    assert rest, "the stream must end, not hang"
    assert [e.id for e in seen + rest] == list(range(1, len(seen) + len(rest) + 1))
    assert rest[-1].type == "run_completed"
    assert rest[-1].data["status"] == "interrupted"


async def test_cancelling_through_b_stops_the_run_executing_on_a(
    servers: Servers, instances: Instances
) -> None:
    run_id = await instances.background_run()
    seen = await _stream(instances.b, run_id, limit=3)  # A is executing it now

    cancelled = await instances.b.client.post(
        f"/api/runs/{run_id}/cancel", headers=instances.b.headers
    )  # B has no such run: its cancel request reaches A over Redis
    rest = await _stream(instances.b, run_id, seen[-1].id)
    stored = await instances.a.client.get(f"/api/runs/{run_id}", headers=instances.a.headers)

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert rest[-1].type == "run_completed"
    assert rest[-1].data["status"] == "cancelled"
    assert _text(seen + rest) != ANSWER  # A stopped the model mid-answer
    assert stored.json()["status"] == "cancelled"  # and A did not overwrite it later


async def test_each_instance_reports_the_live_instances(
    servers: Servers, instances: Instances
) -> None:
    detailed = await instances.a.client.get("/health/detailed", headers=instances.a.headers)
    metrics = await instances.b.client.get("/metrics", headers=instances.b.headers)

    assert detailed.status_code == 200, detailed.text
    assert detailed.json()["instances"] == {"server": 2, "worker": 0}
    assert 'agentguild_instances{kind="server"} 2.0' in metrics.text
