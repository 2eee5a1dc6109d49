"""Authorisation matrix: every endpoint x every role x own and foreign tenant.

`EXPECTATIONS` names each route of the app (method and path template) with the
permission it needs and how to build a valid request against a resource of the home
tenant. The matrix then sends that request as each role of the home tenant (allowed:
success; not allowed: 403), as each role of a foreign tenant (a foreign resource looks
missing: 404; a missing permission: 403; nothing of the home tenant may show in the
answer), and without credentials (401). `test_every_route_has_an_expectation` compares
the table with `app.routes`, so a new endpoint without an entry fails.
"""

from __future__ import annotations

import pytest
from authz_support import (
    AUTHENTICATED,
    PUBLIC,
    Expect,
    chat_with_home_agent,
    fixed,
    home_agent_names,
    key_for_home_viewer,
    new_agent,
    new_user,
    run_over_websocket,
    send,
    with_agent,
    with_conversation,
    with_dead_letter,
    with_key,
    with_run,
    with_task,
    with_user,
)
from e2e_helpers import ADMIN_PASSWORD, ROLES, Caller, World
from fastapi.routing import APIWebSocketRoute, iter_route_contexts
from starlette.routing import Mount, WebSocketRoute

from agentguild.security import Permission, Role
from agentguild.server.app import WEB_DIR

A, C, U, K = "/api/agents", "/api/conversations", "/api/admin/users", "/api/admin/keys"
T = "/api/tasks"
D = "/api/admin/dead-letters"
LOGIN = {"username": "admin", "password": ADMIN_PASSWORD}
RUN = {"input": "hi", "mode": "wait", "agent_id": "assistant"}
P = Permission

EXPECTATIONS: dict[tuple[str, str], Expect] = {
    ("GET", "/health"): Expect(PUBLIC, 200, fixed("/health")),
    ("GET", "/ready"): Expect(PUBLIC, 200, fixed("/ready")),
    ("GET", "/health/detailed"): Expect(
        P.METRICS_READ, 200, fixed("/health/detailed"), operator=True
    ),
    ("GET", "/metrics"): Expect(P.METRICS_READ, 200, fixed("/metrics"), operator=True),
    ("POST", "/auth/token"): Expect(PUBLIC, 200, fixed("/auth/token", LOGIN)),
    ("GET", "/openapi.json"): Expect(PUBLIC, 200, fixed("/openapi.json")),
    ("GET", "/docs"): Expect(PUBLIC, 200, fixed("/docs")),
    ("GET", "/docs/oauth2-redirect"): Expect(PUBLIC, 200, fixed("/docs/oauth2-redirect")),
    ("GET", "/redoc"): Expect(PUBLIC, 200, fixed("/redoc")),
    # agents
    ("GET", A): Expect(P.AGENTS_READ, 200, with_agent(A)),
    ("POST", A): Expect(P.AGENTS_WRITE, 201, new_agent()),
    ("GET", A + "/{agent}"): Expect(P.AGENTS_READ, 200, with_agent(A + "/{agent}"), True),
    ("PATCH", A + "/{agent}"): Expect(
        P.AGENTS_WRITE, 200, with_agent(A + "/{agent}", {"description": "x"}, check=True), True
    ),
    ("DELETE", A + "/{agent}"): Expect(
        P.AGENTS_DELETE, 204, with_agent(A + "/{agent}", check=True), True
    ),
    ("GET", A + "/{agent}/versions"): Expect(
        P.AGENTS_READ, 200, with_agent(A + "/{agent}/versions"), True
    ),
    ("GET", A + "/{agent}/versions/{version}"): Expect(
        P.AGENTS_READ, 200, with_agent(A + "/{agent}/versions/1"), True
    ),
    # conversations
    ("GET", C): Expect(P.DATA_READ, 200, with_conversation(C)),
    ("POST", C): Expect(P.DATA_WRITE, 201, fixed(C, {"title": "new"})),
    ("GET", C + "/{conversation_id}"): Expect(
        P.DATA_READ, 200, with_conversation(C + "/{conversation}"), True
    ),
    ("PATCH", C + "/{conversation_id}"): Expect(
        P.DATA_WRITE,
        200,
        with_conversation(C + "/{conversation}", {"title": "t"}, check=True),
        True,
    ),
    ("DELETE", C + "/{conversation_id}"): Expect(
        P.DATA_DELETE, 204, with_conversation(C + "/{conversation}", check=True), True
    ),
    ("GET", C + "/{conversation_id}/messages"): Expect(
        P.DATA_READ, 200, with_conversation(C + "/{conversation}/messages"), True
    ),
    # users and keys
    ("GET", U): Expect(P.USERS_MANAGE, 200, with_user(U)),
    ("POST", U): Expect(P.USERS_MANAGE, 201, new_user()),
    ("GET", U + "/{user_id}"): Expect(P.USERS_MANAGE, 200, with_user(U + "/{user}"), True),
    ("PATCH", U + "/{user_id}"): Expect(
        P.USERS_MANAGE, 200, with_user(U + "/{user}", {"role": "user"}, check=True), True
    ),
    ("DELETE", U + "/{user_id}"): Expect(
        P.USERS_MANAGE, 204, with_user(U + "/{user}", check=True), True
    ),
    ("GET", K): Expect(P.USERS_MANAGE, 200, with_key(K)),
    ("POST", K): Expect(P.USERS_MANAGE, 201, key_for_home_viewer(), True),
    ("DELETE", K + "/{key_id}"): Expect(P.USERS_MANAGE, 204, with_key(K + "/{key}"), True),
    # runs, /v1, WebSocket
    ("POST", C + "/{conversation_id}/runs"): Expect(
        P.AGENTS_EXECUTE, 200, with_conversation(C + "/{conversation}/runs", RUN), True
    ),
    ("GET", "/api/runs/{run_id}"): Expect(P.DATA_READ, 200, with_run("/api/runs/{run}"), True),
    ("GET", "/api/runs/{run_id}/stream"): Expect(
        P.DATA_READ, 200, with_run("/api/runs/{run}/stream"), True
    ),
    ("GET", "/api/runs/{run_id}/join"): Expect(
        P.DATA_READ, 200, with_run("/api/runs/{run}/join"), True
    ),
    ("POST", "/api/runs/{run_id}/cancel"): Expect(
        P.AGENTS_EXECUTE, 200, with_run("/api/runs/{run}/cancel"), True
    ),
    # planned tasks
    ("GET", T): Expect(P.DATA_READ, 200, with_task(T)),
    ("POST", T): Expect(P.AGENTS_EXECUTE, 202, fixed(T, {"input": "plan this"})),
    ("GET", T + "/{task_id}"): Expect(P.DATA_READ, 200, with_task(T + "/{task}"), True),
    ("POST", T + "/{task_id}/cancel"): Expect(
        P.AGENTS_EXECUTE, 200, with_task(T + "/{task}/cancel"), True
    ),
    # background jobs and their dead letters
    ("GET", D): Expect(P.JOBS_MANAGE, 200, with_dead_letter(D)),
    ("GET", D + "/{dead_letter_id}"): Expect(
        P.JOBS_MANAGE, 200, with_dead_letter(D + "/{letter}"), True
    ),
    ("POST", D + "/{dead_letter_id}/redrive"): Expect(
        P.JOBS_MANAGE, 202, with_dead_letter(D + "/{letter}/redrive", check=True), True
    ),
    ("GET", "/api/admin/jobs/{job_id}"): Expect(
        P.JOBS_MANAGE, 200, with_dead_letter("/api/admin/jobs/{job}"), True
    ),
    ("GET", "/v1/models"): Expect(P.AGENTS_READ, 200, home_agent_names("/v1/models")),
    ("POST", "/v1/chat/completions"): Expect(P.AGENTS_EXECUTE, 200, chat_with_home_agent(), True),
    ("WEBSOCKET", "/api/ws"): Expect(P.AGENTS_EXECUTE, 200, run_over_websocket(), True),
    # own keys
    ("GET", "/api/me"): Expect(AUTHENTICATED, 200, fixed("/api/me")),
    ("GET", "/api/keys"): Expect(AUTHENTICATED, 200, with_key("/api/keys")),
    ("POST", "/api/keys"): Expect(AUTHENTICATED, 201, fixed("/api/keys", {"name": "m"})),
    ("DELETE", "/api/keys/{key_id}"): Expect(AUTHENTICATED, 204, with_key("/api/keys/{key}"), True),
}


if (WEB_DIR / "index.html").is_file():  # the built-in web UI, mounted at `/`
    EXPECTATIONS[("GET", "/")] = Expect(PUBLIC, 200, fixed("/"))


def route_table(app: object) -> set[tuple[str, str]]:
    """(method, path template) of every endpoint the app serves, included routers too."""
    table: set[tuple[str, str]] = set()
    for context in iter_route_contexts(app.routes):  # type: ignore[attr-defined]
        route = context.original_route
        if isinstance(route, APIWebSocketRoute | WebSocketRoute):
            table.add(("WEBSOCKET", str(context.path)))
        elif isinstance(route, Mount):
            table.add(("GET", context.path or "/"))
        elif context.methods is not None:
            table |= {(m, str(context.path)) for m in context.methods if m != "HEAD"}
        else:
            table.add((type(route).__name__, str(context.path)))
    return table


def expected_status(spec: Expect, caller: Caller | None, home: bool) -> int:
    if spec.need == PUBLIC:
        return spec.ok
    if caller is None:
        return 401
    if spec.need != AUTHENTICATED and not caller.principal.can(Permission(spec.need)):
        return 403
    if not home and spec.operator:
        return 403
    if not home and spec.scoped:
        return 404
    return spec.ok


async def test_every_route_has_an_expectation(world: World) -> None:
    served = route_table(world.app)

    missing = sorted(served - set(EXPECTATIONS))
    stale = sorted(set(EXPECTATIONS) - served)

    assert not missing, f"routes without an authorisation expectation: {missing}"
    assert not stale, f"expectations for routes that no longer exist: {stale}"


@pytest.mark.parametrize("endpoint", sorted(EXPECTATIONS), ids=" ".join)
async def test_endpoint_authorisation(world: World, endpoint: tuple[str, str]) -> None:
    method, _ = endpoint
    spec = EXPECTATIONS[endpoint]
    client = world.client
    outcomes: dict[str, tuple[int, int]] = {}
    for role in ROLES:
        for tenant, caller in (("home", world.home[role]), ("foreign", world.foreign[role])):
            target = await spec.target(world, world.home[role])
            response = await send(world, method, target, caller.headers)
            want = expected_status(spec, caller, tenant == "home")
            outcomes[f"{tenant}:{role.value}"] = (response.status_code, want)
            if tenant == "foreign" and response.is_success:
                for home_id in target.home_ids:
                    assert home_id not in response.text, f"{role} foreign caller saw {home_id}"
            if tenant == "foreign" and target.alive is not None:
                alive = await client.get(target.alive, headers=world.home[Role.ADMIN].headers)
                assert alive.status_code == 200, f"foreign {role} changed {target.alive}"
    target = await spec.target(world, world.home[Role.ADMIN])
    anonymous = await send(world, method, target, {})
    outcomes["anonymous"] = (anonymous.status_code, expected_status(spec, None, True))

    wrong = {who: got for who, got in outcomes.items() if got[0] != got[1]}
    assert not wrong, f"{method} {endpoint[1]}: (got, expected) {wrong}"
