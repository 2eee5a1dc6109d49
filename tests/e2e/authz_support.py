"""Requests of the authorisation matrix: resources of the home tenant to aim at, and a
WebSocket probe that maps its outcome onto HTTP statuses (see test_authz_matrix.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from e2e_helpers import PASSWORD, Caller, World, unique

from agentguild.runtime.queue import JobContext, PermanentJobError
from agentguild.security import Permission, Principal, Role
from agentguild.types import Message

PUBLIC = "public"
AUTHENTICATED = "authenticated"


@dataclass(frozen=True)
class Target:
    """A concrete request, and what must survive a foreign caller sending it."""

    path: str
    json: object | None = None
    home_ids: tuple[str, ...] = ()
    """Ids of home-tenant resources that must not appear in a foreign caller's answer."""
    alive: str | None = None
    """A path the home admin must still read (200) after a foreign caller's request."""


Factory = Callable[[World, Caller], Awaitable[Target]]


@dataclass(frozen=True)
class Expect:
    need: Permission | str
    ok: int
    target: Factory
    scoped: bool = False
    """The request names a home-tenant resource: foreign callers get 404."""
    operator: bool = False
    """Process-wide data: only the operators' (home) tenant may read it."""
    notes: tuple[str, ...] = field(default=())


# ---- resources of the home tenant ------------------------------------------------------


async def _agent(w: World, _owner: Caller) -> str:
    body = {"name": unique("agent")}
    response = await w.client.post("/api/agents", headers=w.home[Role.ADMIN].headers, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _conversation(w: World, owner: Caller) -> str:
    async with w.services.db.repos(owner.principal) as repos:  # type: ignore[attr-defined]
        row = await repos.conversations.create(owner.user_id, None, "matrix")
    return str(row.id)


async def _user(w: World, owner: Caller) -> str:
    admin = Principal(owner.tenant_id, Role.ADMIN)
    async with w.services.db.repos(admin) as repos:  # type: ignore[attr-defined]
        user = await repos.users.create(unique("target"), PASSWORD, Role.VIEWER)
    return str(user.id)


async def _key(w: World, owner: Caller) -> str:
    async with w.services.db.repos(owner.principal) as repos:  # type: ignore[attr-defined]
        key, _ = await repos.api_keys.create("matrix", owner.role, user_id=owner.user_id)
    return str(key.id)


async def _run(w: World, owner: Caller) -> str:
    conversation = await _conversation(w, owner)
    runner = w.services.runner  # type: ignore[attr-defined]
    handle = await runner.start(
        owner.principal, conversation, [Message.user("hi")], agent_id="assistant", mode="background"
    )
    await handle.wait()
    return str(handle.run_id)


async def _task(w: World, owner: Caller) -> str:
    tasks = w.services.tasks  # type: ignore[attr-defined]
    task = await tasks.submit(owner.principal, "matrix")
    await tasks.manager.wait(task.id, tenant_id=owner.tenant_id)
    return str(task.id)


async def _dead_letter(w: World, owner: Caller) -> tuple[str, str]:
    """A job of the owner's tenant that failed for good: (dead letter id, job id)."""
    queue = w.services.queue  # type: ignore[attr-defined]
    name = unique("matrix.fail")

    async def fail(ctx: JobContext) -> None:
        raise PermanentJobError("matrix")

    queue.executor.registry.handler(name)(fail)
    job_id = await queue.enqueue(name, {}, tenant_id=owner.tenant_id)
    await queue.join()
    [letter] = [
        d for d in await queue.dead_letters(tenant_id=owner.tenant_id) if d.job_id == job_id
    ]
    return str(letter.id), str(job_id)


def fixed(path: str, json: object | None = None) -> Factory:
    async def factory(_w: World, _owner: Caller) -> Target:
        return Target(path, json)

    return factory


def with_agent(template: str, json: object | None = None, *, check: bool = False) -> Factory:
    async def factory(w: World, owner: Caller) -> Target:
        agent = await _agent(w, owner)
        path = template.format(agent=agent)
        return Target(path, json, (agent,), f"/api/agents/{agent}" if check else None)

    return factory


def with_conversation(template: str, json: object | None = None, *, check: bool = False) -> Factory:
    async def factory(w: World, owner: Caller) -> Target:
        conv = await _conversation(w, owner)
        alive = f"/api/conversations/{conv}" if check else None
        return Target(template.format(conversation=conv), json, (conv,), alive)

    return factory


def with_user(template: str, json: object | None = None, *, check: bool = False) -> Factory:
    async def factory(w: World, owner: Caller) -> Target:
        user = await _user(w, owner)
        alive = f"/api/admin/users/{user}" if check else None
        return Target(template.format(user=user), json, (user,), alive)

    return factory


def with_run(template: str, json: object | None = None) -> Factory:
    async def factory(w: World, owner: Caller) -> Target:
        run = await _run(w, owner)
        return Target(template.format(run=run), json, (run,))

    return factory


def with_task(template: str) -> Factory:
    async def factory(w: World, owner: Caller) -> Target:
        task = await _task(w, owner)
        return Target(template.format(task=task), None, (task,), f"/api/tasks/{task}")

    return factory


def with_dead_letter(template: str, *, check: bool = False) -> Factory:
    async def factory(w: World, owner: Caller) -> Target:
        letter, job = await _dead_letter(w, owner)
        alive = f"/api/admin/dead-letters/{letter}" if check else None
        return Target(template.format(letter=letter, job=job), None, (letter, job), alive)

    return factory


def chat_with_home_agent() -> Factory:
    async def factory(w: World, owner: Caller) -> Target:
        agent_id = await _agent(w, owner)
        async with w.services.db.repos(owner.principal) as repos:  # type: ignore[attr-defined]
            agent = await repos.agents.get(agent_id)
        assert agent is not None
        body = {"model": agent.name, "messages": [{"role": "user", "content": "hi"}]}
        return Target("/v1/chat/completions", body, (agent.name,))

    return factory


def home_agent_names(path: str) -> Factory:
    async def factory(w: World, owner: Caller) -> Target:
        agent_id = await _agent(w, owner)
        async with w.services.db.repos(owner.principal) as repos:  # type: ignore[attr-defined]
            agent = await repos.agents.get(agent_id)
        assert agent is not None
        return Target(path, None, (agent.name, agent_id))

    return factory


def run_over_websocket() -> Factory:
    async def factory(w: World, owner: Caller) -> Target:
        conversation = await _conversation(w, owner)
        message = {"type": "run", "conversation_id": conversation, "input": "hi"}
        message["agent_id"] = "assistant"
        return Target("/api/ws", message, (conversation,))

    return factory


def with_key(template: str) -> Factory:
    async def factory(w: World, owner: Caller) -> Target:
        key = await _key(w, owner)
        return Target(template.format(key=key), None, (key,))

    return factory


def new_agent() -> Factory:
    async def factory(_w: World, _owner: Caller) -> Target:
        return Target("/api/agents", {"name": unique("agent")})

    return factory


def new_user() -> Factory:
    async def factory(_w: World, _owner: Caller) -> Target:
        return Target("/api/admin/users", {"username": unique("new"), "password": PASSWORD})

    return factory


def key_for_home_viewer() -> Factory:
    async def factory(w: World, _owner: Caller) -> Target:
        viewer = w.home[Role.VIEWER]
        return Target("/api/admin/keys", {"user_id": viewer.user_id, "role": "viewer"})

    return factory


@dataclass
class _Answer:
    """What the matrix needs of an answer (HTTP, or a WebSocket mapped onto statuses)."""

    status_code: int
    text: str

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


async def send(w: World, method: str, target: Target, headers: dict[str, str]) -> _Answer:
    if method == "WEBSOCKET":
        return await _websocket(w.app, target, headers)
    response = await w.client.request(method, target.path, headers=headers, json=target.json)
    return _Answer(response.status_code, response.text)


_WS_ERRORS = {"unauthenticated": 401, "forbidden": 403, "not_found": 404}


async def _websocket(app: object, target: Target, headers: dict[str, str]) -> _Answer:
    """Connect, send `target.json`, and map the outcome onto HTTP statuses: refused
    connection 401, an `error` reply by its type, a run event 200."""
    inbox: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": target.path,
        "raw_path": target.path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "subprotocols": [],
    }
    await inbox.put({"type": "websocket.connect"})
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))  # type: ignore[operator]
    try:
        opening = await asyncio.wait_for(outbox.get(), 10)
        if opening["type"] != "websocket.accept":
            return _Answer(401, json.dumps(opening, default=str))
        await inbox.put({"type": "websocket.receive", "text": json.dumps(target.json)})
        reply = await asyncio.wait_for(outbox.get(), 10)
        text = str(reply.get("text") or reply.get("bytes") or "")
        event = json.loads(text) if text else {}
        if "seq" in event:
            return _Answer(200, text)
        return _Answer(_WS_ERRORS.get(event.get("data", {}).get("type"), 0), text)
    finally:
        await inbox.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(task, 10)
