"""Runs on one conversation take turns: the `multitask` policy (enqueue, reject, interrupt).

The agent's model is the fake OpenAI-compatible server. It answers `re: <the last user
text>`, except that an input `hold <gate>` makes the model call wait until the test opens
that gate (`fail <gate>`: then it answers with an error), and `tool <gate>` makes the
model first call the `wait_for` tool, which waits for the gate. So a test holds a run
active (in a model call, or in a tool call) for as long as it needs, and knows when the
run got there (`Gate.reached`), without sleeping.

Every test runs against SQLite and PostgreSQL, each on a server of its own (a real
uvicorn: streamed responses are read as they arrive).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
import websockets
from e2e_helpers import POSTGRES_URL, assert_error, unique
from runs_support import Event, LiveServer, Tenant, admin, serve, settings_for, sse_events

from agentguild.runtime._history import INTERRUPTED_TOOL_RESULT
from agentguild.security import Principal, Role
from agentguild.store.models import Run
from agentguild.testing import ErrorReply, FakeLLMServer, Reply
from agentguild.tools import Tool, tool


@dataclass
class Gate:
    """Holds a model or tool call until the test opens it."""

    reached: asyncio.Event = field(default_factory=asyncio.Event)
    """A call is waiting at the gate."""
    opened: asyncio.Event = field(default_factory=asyncio.Event)


class Upstream:
    """The fake model's answers, and the gates they wait at (see the module docs)."""

    def __init__(self) -> None:
        self.gates: dict[str, Gate] = {}

    def gate(self, name: str) -> Gate:
        return self.gates.setdefault(name, Gate())

    async def __call__(self, request: dict[str, Any]) -> Reply | ErrorReply:
        messages = request["messages"]
        text = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        verb, _, name = text.partition(" ")
        if verb in ("hold", "fail"):
            gate = self.gate(name)
            gate.reached.set()
            await gate.opened.wait()
            if verb == "fail":
                return ErrorReply.bad_request("a scripted failure")
        elif verb == "tool" and messages[-1]["role"] != "tool":
            return Reply.calling("wait_for", {"gate": name})
        return Reply(f"re: {text}")

    def open_all(self) -> None:
        for gate in self.gates.values():
            gate.opened.set()


def _wait_for_tool(upstream: Upstream) -> Tool:
    @tool
    async def wait_for(gate: str) -> str:
        """Wait until the test opens the gate.

        Args:
            gate: the gate's name
        """
        held = upstream.gate(gate)
        held.reached.set()
        await held.opened.wait()
        return "opened"

    return wait_for


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=["sqlite", "postgresql"])
async def module_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A database of this module's own: a SQLite file, or a fresh PostgreSQL database
    (unreachable PostgreSQL skips, except under `CI=true`, where it fails)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('multitask') / 'runs.db'}"
        return
    import asyncpg  # type: ignore[import-untyped]

    try:
        admin_conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except OSError as exc:
        message = f"PostgreSQL is not reachable ({exc})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    name = f"agentguild_multitask_{uuid.uuid4().hex[:12]}"
    try:
        await admin_conn.execute(f'CREATE DATABASE "{name}"')
        base = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        yield f"{base}/{name}"
        await admin_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin_conn.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def upstream() -> AsyncIterator[tuple[FakeLLMServer, Upstream]]:
    responder = Upstream()
    async with FakeLLMServer(responder=responder) as fake:
        yield fake, responder
        responder.open_all()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(
    module_database: str,
    upstream: tuple[FakeLLMServer, Upstream],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[LiveServer]:
    fake, responder = upstream
    model = {"provider": "openai", "model": "fake-model", "base_url": fake.base_url}
    settings = settings_for(
        tmp_path_factory.mktemp("multitask-data"), {"fake": model}, database_url=module_database
    )
    async with serve(settings, tools={"wait_for": _wait_for_tool(responder)}) as live:
        yield live


@pytest_asyncio.fixture(loop_scope="session")
async def tenant(server: LiveServer) -> AsyncIterator[Tenant]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield await admin(client)


@pytest_asyncio.fixture(loop_scope="session")
async def gates(upstream: tuple[FakeLLMServer, Upstream]) -> AsyncIterator[Upstream]:
    """The gates; whatever a test left closed is opened after it (nothing stays held)."""
    _, responder = upstream
    yield responder
    responder.open_all()


@pytest_asyncio.fixture(loop_scope="session")
async def conversation_id(tenant: Tenant) -> str:
    agent = await tenant.agent({"model": "fake", "tools": ["wait_for"]})
    return await tenant.conversation(agent["id"])


@pytest.fixture
def stored_runs(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> asyncio.Queue[str]:
    """Ids of the runs the server starts, as soon as each is stored (before a `wait`
    request answers)."""
    runner = server.services.runner
    start = runner.start
    ids: asyncio.Queue[str] = asyncio.Queue()

    async def noting_start(*args: Any, **kwargs: Any) -> Any:
        handle = await start(*args, **kwargs)
        ids.put_nowait(handle.run_id)
        return handle

    monkeypatch.setattr(runner, "start", noting_start)
    return ids


# ---- helpers --------------------------------------------------------------------------


@dataclass
class Held:
    """A background run held in its model call."""

    run_id: str
    text: str
    gate: Gate


async def _post(tenant: Tenant, conversation_id: str, text: str, **body: Any) -> httpx.Response:
    return await tenant.client.post(
        f"/api/conversations/{conversation_id}/runs",
        headers=tenant.headers,
        json={"input": text, **body},
    )


async def _background(tenant: Tenant, conversation_id: str, text: str, **body: Any) -> str:
    """Start a background run; its id."""
    response = await _post(tenant, conversation_id, text, mode="background", **body)
    assert response.status_code == 202, response.text
    run_id: str = response.json()["run"]["id"]
    return run_id


async def _held(tenant: Tenant, gates: Upstream, conversation_id: str, verb: str = "hold") -> Held:
    """Start a background run and wait until it is in its model call, held at its gate
    (`verb` "fail": the call fails once the gate opens)."""
    name = unique("g")
    text = f"{verb} {name}"
    run_id = await _background(tenant, conversation_id, text)
    gate = gates.gate(name)
    await gate.reached.wait()
    return Held(run_id, text, gate)


async def _run(tenant: Tenant, run_id: str) -> dict[str, Any]:
    response = await tenant.client.get(f"/api/runs/{run_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


async def _followed(tenant: Tenant, run_id: str) -> list[Event]:
    """The run's events, once it has ended."""
    url = f"/api/runs/{run_id}/stream"
    async with tenant.client.stream("GET", url, headers=tenant.headers) as response:
        assert response.status_code == 200
        return [event async for event in sse_events(response)]


Line = tuple[str, str, str]
"""A stored message as (role, text or the names of the tools it calls, run id)."""


async def _transcript(tenant: Tenant, conversation_id: str) -> list[Line]:
    return [
        (
            m["role"],
            m["content"] or ",".join(c["function"]["name"] for c in m["tool_calls"] or []),
            m["run_id"],
        )
        for m in await tenant.messages(conversation_id)
    ]


def _turn(run_id: str, text: str) -> list[Line]:
    """What a run on `text` without tool calls stores: its input, then the answer."""
    return [("user", text, run_id), ("assistant", f"re: {text}", run_id)]


def _at(run: dict[str, Any], key: str) -> datetime:
    return datetime.fromisoformat(run[key])


def _unanswered_tool_calls(messages: list[dict[str, Any]]) -> list[str]:
    """Ids of assistant tool calls that no tool message answers."""
    answered = {m.get("tool_call_id") for m in messages if m["role"] == "tool"}
    return [
        call["id"]
        for m in messages
        if m["role"] == "assistant"
        for call in m.get("tool_calls") or []
        if call["id"] not in answered
    ]


async def _stored_runs(server: LiveServer, conversation_id: str) -> dict[str, Run]:
    """Every run stored for the conversation, by id."""
    async with server.services.db.system() as system:
        home = await system.tenant_by_name("default")
    assert home is not None
    async with server.services.db.repos(Principal(home.id, Role.ADMIN)) as repos:
        page = await repos.runs.list(conversation_id, limit=200)
    return {run.id: run for run in page.items}


# ---- enqueue (the default) ------------------------------------------------------------


async def test_a_background_run_waits_for_the_active_run_then_follows_it(
    tenant: Tenant, gates: Upstream, conversation_id: str
) -> None:
    held = await _held(tenant, gates, conversation_id)

    second = await _background(tenant, conversation_id, "second")

    waiting = await _run(tenant, second)
    assert (waiting["status"], waiting["started_at"]) == ("queued", None)
    assert await _transcript(tenant, conversation_id) == [("user", held.text, held.run_id)]
    held.gate.opened.set()
    events = await _followed(tenant, second)
    assert events[0].type == "run_started"
    assert (events[-1].type, events[-1].data["status"]) == ("run_completed", "completed")
    assert events[-1].data["output"] == "re: second"
    first_run, second_run = await _run(tenant, held.run_id), await _run(tenant, second)
    assert first_run["status"] == "completed"
    assert _at(first_run, "finished_at") <= _at(second_run, "started_at")
    assert await _transcript(tenant, conversation_id) == [
        *_turn(held.run_id, held.text),
        *_turn(second, "second"),
    ]


async def test_a_wait_run_answers_once_it_has_had_its_turn(
    tenant: Tenant, gates: Upstream, conversation_id: str, stored_runs: asyncio.Queue[str]
) -> None:
    held = await _held(tenant, gates, conversation_id)
    assert await stored_runs.get() == held.run_id

    request = asyncio.create_task(_post(tenant, conversation_id, "second", mode="wait"))
    second = await stored_runs.get()

    assert (await _run(tenant, second))["status"] == "queued"
    assert await _transcript(tenant, conversation_id) == [("user", held.text, held.run_id)]
    held.gate.opened.set()
    response = await request
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["run"]["id"], body["run"]["status"]) == (second, "completed")
    assert body["output"] == "re: second"
    assert body["messages"] == [{"role": "assistant", "content": "re: second"}]
    assert await _transcript(tenant, conversation_id) == [
        *_turn(held.run_id, held.text),
        *_turn(second, "second"),
    ]


async def test_a_streamed_run_stays_open_while_it_waits_then_carries_its_events(
    tenant: Tenant, gates: Upstream, conversation_id: str
) -> None:
    held = await _held(tenant, gates, conversation_id)
    url = f"/api/conversations/{conversation_id}/runs"
    body = {"input": "second", "mode": "stream"}

    async with tenant.client.stream("POST", url, headers=tenant.headers, json=body) as response:
        assert response.status_code == 200
        second = response.headers["location"].removeprefix("/api/runs/")
        assert (await _run(tenant, second))["status"] == "queued"
        held.gate.opened.set()
        events = [event async for event in sse_events(response)]

    assert (events[0].type, events[0].data["run_id"]) == ("run_started", second)
    assert (events[-1].type, events[-1].data["status"]) == ("run_completed", "completed")
    assert "".join(e.data["text"] for e in events if e.type == "text_delta") == "re: second"
    assert (await _run(tenant, held.run_id))["status"] == "completed"
    assert await _transcript(tenant, conversation_id) == [
        *_turn(held.run_id, held.text),
        *_turn(second, "second"),
    ]


async def test_runs_enqueued_behind_an_active_run_go_one_at_a_time_in_creation_order(
    tenant: Tenant, gates: Upstream, conversation_id: str
) -> None:
    first = await _held(tenant, gates, conversation_id)
    g2, g3 = unique("g"), unique("g")
    texts = [f"hold {g2}", f"hold {g3}", "fourth"]

    ids = [await _background(tenant, conversation_id, text) for text in texts]

    first.gate.opened.set()
    await gates.gate(g2).reached.wait()  # the second is in its model call...
    assert await _transcript(tenant, conversation_id) == [
        *_turn(first.run_id, first.text),
        ("user", texts[0], ids[0]),
    ]  # ...and the third and fourth wait, their input aside
    assert [(await _run(tenant, i))["status"] for i in ids] == ["running", "queued", "queued"]
    gates.gate(g2).opened.set()
    await gates.gate(g3).reached.wait()
    assert [(await _run(tenant, i))["status"] for i in ids] == ["completed", "running", "queued"]
    gates.gate(g3).opened.set()
    assert (await _followed(tenant, ids[2]))[-1].data["status"] == "completed"
    assert await _transcript(tenant, conversation_id) == [
        *_turn(first.run_id, first.text),
        *(line for run_id, text in zip(ids, texts, strict=True) for line in _turn(run_id, text)),
    ]
    runs = [await _run(tenant, i) for i in (first.run_id, *ids)]
    for earlier, later in itertools.pairwise(runs):
        assert _at(earlier, "finished_at") <= _at(later, "started_at")


async def test_a_run_waiting_behind_one_that_fails_still_runs(
    tenant: Tenant, gates: Upstream, conversation_id: str
) -> None:
    failing = await _held(tenant, gates, conversation_id, verb="fail")
    second = await _background(tenant, conversation_id, "second")

    failing.gate.opened.set()

    assert (await _followed(tenant, second))[-1].data["status"] == "completed"
    assert (await _run(tenant, failing.run_id))["status"] == "failed"
    assert await _transcript(tenant, conversation_id) == [
        ("user", failing.text, failing.run_id),
        *_turn(second, "second"),
    ]


async def test_runs_started_together_on_an_idle_conversation_take_turns(
    tenant: Tenant, conversation_id: str
) -> None:
    texts = [f"together {n}" for n in range(6)]

    responses = await asyncio.gather(
        *(_post(tenant, conversation_id, text, mode="background") for text in texts)
    )

    ids = [response.json()["run"]["id"] for response in responses]
    for run_id in ids:
        assert (await _followed(tenant, run_id))[-1].data["status"] == "completed"
    runs = sorted(
        [await _run(tenant, i) for i in ids], key=lambda r: (_at(r, "created_at"), r["id"])
    )
    text_of = dict(zip(ids, texts, strict=True))
    assert await _transcript(tenant, conversation_id) == [
        line for run in runs for line in _turn(run["id"], text_of[run["id"]])
    ]


async def test_a_waiting_streamed_run_whose_client_leaves_is_cancelled_unseen(
    server: LiveServer, tenant: Tenant, gates: Upstream, conversation_id: str
) -> None:
    held = await _held(tenant, gates, conversation_id)
    url = f"/api/conversations/{conversation_id}/runs"
    body = {"input": "gone", "mode": "stream"}

    async with tenant.client.stream("POST", url, headers=tenant.headers, json=body) as response:
        left = response.headers["location"].removeprefix("/api/runs/")
    handle = server.services.runner.registry.lookup(left)
    assert handle is not None
    await handle.wait()

    assert (await _run(tenant, left))["status"] == "cancelled"
    held.gate.opened.set()
    assert (await _followed(tenant, held.run_id))[-1].data["status"] == "completed"
    assert await _transcript(tenant, conversation_id) == _turn(held.run_id, held.text)


# ---- reject ---------------------------------------------------------------------------


async def test_reject_is_409_naming_the_active_runs_and_stores_nothing(
    server: LiveServer, tenant: Tenant, gates: Upstream, conversation_id: str
) -> None:
    held = await _held(tenant, gates, conversation_id)
    waiting = await _background(tenant, conversation_id, "second")

    response = await _post(tenant, conversation_id, "third", mode="wait", multitask="reject")

    assert_error(response, 409, "conversation_busy")
    assert response.json()["error"]["details"] == {"active_runs": [held.run_id, waiting]}
    assert set(await _stored_runs(server, conversation_id)) == {held.run_id, waiting}
    assert await _transcript(tenant, conversation_id) == [("user", held.text, held.run_id)]
    held.gate.opened.set()
    assert (await _followed(tenant, waiting))[-1].data["status"] == "completed"


async def test_reject_starts_the_run_once_the_conversation_is_idle(
    tenant: Tenant, gates: Upstream, conversation_id: str
) -> None:
    held = await _held(tenant, gates, conversation_id)
    busy = await _post(tenant, conversation_id, "second", mode="wait", multitask="reject")
    held.gate.opened.set()
    await _followed(tenant, held.run_id)

    response = await _post(tenant, conversation_id, "second", mode="wait", multitask="reject")

    assert busy.status_code == 409
    assert response.status_code == 200, response.text
    assert response.json()["run"]["status"] == "completed"
    assert response.json()["output"] == "re: second"


# ---- interrupt ------------------------------------------------------------------------


async def test_interrupt_cancels_a_run_in_a_tool_call_and_leaves_no_call_unanswered(
    tenant: Tenant,
    gates: Upstream,
    conversation_id: str,
    upstream: tuple[FakeLLMServer, Upstream],
) -> None:
    fake, _ = upstream
    name = unique("g")
    first = await _background(tenant, conversation_id, f"tool {name}")
    await gates.gate(name).reached.wait()  # the run is in its tool call

    response = await _post(tenant, conversation_id, "instead", mode="wait", multitask="interrupt")

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["run"]["status"], body["output"]) == ("completed", "re: instead")
    assert (await _run(tenant, first))["status"] == "cancelled"
    assert await _transcript(tenant, conversation_id) == [
        ("user", f"tool {name}", first),
        ("assistant", "wait_for", first),
        *_turn(body["run"]["id"], "instead"),
    ]
    # The stored record keeps the call as it was (see `_history`); the model is told it
    # was interrupted, so the conversation it gets is valid.
    seen = next(r["messages"] for r in fake.requests if r["messages"][-1]["content"] == "instead")
    assert _unanswered_tool_calls(seen) == []
    assert [m["content"] for m in seen if m["role"] == "tool"] == [INTERRUPTED_TOOL_RESULT]


async def test_interrupt_cancels_the_runs_waiting_behind_the_active_one_too(
    tenant: Tenant, gates: Upstream, conversation_id: str
) -> None:
    held = await _held(tenant, gates, conversation_id)
    waiting = await _background(tenant, conversation_id, "second")

    response = await _post(tenant, conversation_id, "third", mode="wait", multitask="interrupt")

    assert response.status_code == 200, response.text
    third = response.json()["run"]["id"]
    assert (await _run(tenant, held.run_id))["status"] == "cancelled"
    assert (await _run(tenant, waiting))["status"] == "cancelled"
    assert await _transcript(tenant, conversation_id) == [
        ("user", held.text, held.run_id),
        *_turn(third, "third"),
    ]


async def test_interrupt_that_cannot_start_its_run_cancels_nothing(
    tenant: Tenant, gates: Upstream, conversation_id: str
) -> None:
    held = await _held(tenant, gates, conversation_id)

    response = await _post(
        tenant, conversation_id, "x", mode="wait", multitask="interrupt", agent_id="no-such-agent"
    )

    assert_error(response, 404, "not_found")
    assert (await _run(tenant, held.run_id))["status"] == "running"
    held.gate.opened.set()
    assert (await _followed(tenant, held.run_id))[-1].data["status"] == "completed"


# ---- cancelling, validation, other conversations ----------------------------------------


async def test_cancelling_a_waiting_run_drops_its_input_and_the_next_run_goes_on(
    server: LiveServer, tenant: Tenant, gates: Upstream, conversation_id: str
) -> None:
    held = await _held(tenant, gates, conversation_id)
    second = await _background(tenant, conversation_id, "second")
    third = await _background(tenant, conversation_id, "third")

    cancelled = await tenant.client.post(f"/api/runs/{second}/cancel", headers=tenant.headers)

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert (await _followed(tenant, second))[-1].data["status"] == "cancelled"
    held.gate.opened.set()
    assert (await _followed(tenant, third))[-1].data["status"] == "completed"
    assert (await _run(tenant, second))["status"] == "cancelled"
    assert await _transcript(tenant, conversation_id) == [
        *_turn(held.run_id, held.text),
        *_turn(third, "third"),
    ]
    assert (await _stored_runs(server, conversation_id))[second].pending_input is None


@pytest.mark.parametrize("policy", ["queue", "ENQUEUE", None])
async def test_an_unknown_multitask_policy_is_422(
    server: LiveServer, tenant: Tenant, conversation_id: str, policy: str | None
) -> None:
    response = await _post(tenant, conversation_id, "x", mode="wait", multitask=policy)

    assert_error(response, 422, "validation_error")
    assert await _stored_runs(server, conversation_id) == {}


async def test_a_held_run_does_not_hold_up_another_conversation(
    tenant: Tenant, gates: Upstream, conversation_id: str
) -> None:
    held = await _held(tenant, gates, conversation_id)
    agent = await tenant.agent({"model": "fake"})
    other = await tenant.conversation(agent["id"])

    response = await _post(tenant, other, "elsewhere", mode="wait", multitask="reject")

    assert response.status_code == 200, response.text
    assert response.json()["output"] == "re: elsewhere"
    assert (await _run(tenant, held.run_id))["status"] == "running"


# ---- WebSocket --------------------------------------------------------------------------


def _ws_run(conversation_id: str, text: str, policy: str) -> str:
    message = {"type": "run", "conversation_id": conversation_id, "input": text}
    return orjson.dumps({**message, "multitask": policy}).decode()


async def test_websocket_reject_on_a_busy_conversation_is_a_conversation_busy_error(
    server: LiveServer, tenant: Tenant, gates: Upstream, conversation_id: str
) -> None:
    held = await _held(tenant, gates, conversation_id)
    url = server.url.replace("http://", "ws://") + f"/api/ws?token={tenant.token}"

    async with websockets.connect(url) as socket:
        await socket.send(_ws_run(conversation_id, "refused", "reject"))
        refused = orjson.loads(await socket.recv())

    assert (refused["type"], refused["data"]["type"]) == ("error", "conversation_busy")
    assert held.run_id in refused["data"]["message"]
    assert await _transcript(tenant, conversation_id) == [("user", held.text, held.run_id)]


async def test_websocket_run_enqueued_behind_a_held_run_streams_after_it(
    server: LiveServer,
    tenant: Tenant,
    gates: Upstream,
    conversation_id: str,
    stored_runs: asyncio.Queue[str],
) -> None:
    held = await _held(tenant, gates, conversation_id)
    assert await stored_runs.get() == held.run_id
    url = server.url.replace("http://", "ws://") + f"/api/ws?token={tenant.token}"

    async with websockets.connect(url) as socket:
        await socket.send(_ws_run(conversation_id, "second", "enqueue"))
        second = await stored_runs.get()
        assert (await _run(tenant, second))["status"] == "queued"
        held.gate.opened.set()
        received: list[dict[str, Any]] = []
        while not received or received[-1]["type"] != "run_completed":
            received.append(orjson.loads(await socket.recv()))

    assert (received[0]["type"], received[0]["data"]["run_id"]) == ("run_started", second)
    assert received[-1]["data"]["output"] == "re: second"
    assert await _transcript(tenant, conversation_id) == [
        *_turn(held.run_id, held.text),
        *_turn(second, "second"),
    ]
