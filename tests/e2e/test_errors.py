"""One error shape and the right status codes: 404/405/413/415/422/429/500; request ids,
metrics and access logs around them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import structlog
from e2e_helpers import Caller, World, asgi_client, assert_error

from agentguild.security import Role
from agentguild.server import app as app_module
from agentguild.server import create_app
from agentguild.server.logging import redact_event
from agentguild.server.ratelimit import RateLimiter
from agentguild.server.routes import agents as agents_route


async def test_unknown_route_is_404_in_the_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/does-not-exist")

    assert_error(response, 404, "not_found")


async def test_wrong_method_is_405_in_the_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.put("/health")

    assert_error(response, 405, "method_not_allowed")


async def test_validation_errors_are_422_with_locations_and_without_the_input(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    body = {"username": "ok-name", "password": "Zq9x", "role": "emperor"}

    response = await client.post("/api/admin/users", headers=home[Role.ADMIN].headers, json=body)

    assert_error(response, 422, "validation_error")
    details = response.json()["error"]["details"]
    assert {tuple(d["loc"]) for d in details} == {("body", "password"), ("body", "role")}
    assert "Zq9x" not in response.text


async def test_malformed_json_is_422(client: httpx.AsyncClient, home: dict[Role, Caller]) -> None:
    response = await client.post(
        "/api/agents",
        headers={**home[Role.DEVELOPER].headers, "content-type": "application/json"},
        content=b"{not json",
    )

    assert_error(response, 422, "validation_error")


async def test_bad_pagination_cursor_is_an_error_not_a_crash(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    response = await client.get(
        "/api/agents", headers=home[Role.VIEWER].headers, params={"cursor": "bm90LWEtY3Vyc29y"}
    )

    assert_error(response, 400, "invalid_cursor")


async def test_body_over_the_limit_is_413(
    client: httpx.AsyncClient, world: World, home: dict[Role, Caller]
) -> None:
    limit = world.settings.server.max_body_bytes
    body = {"name": "big", "description": "x" * (limit + 1)}

    response = await client.post("/api/agents", headers=home[Role.DEVELOPER].headers, json=body)

    assert_error(response, 413, "payload_too_large")


async def test_streamed_body_over_the_limit_is_413(
    client: httpx.AsyncClient, world: World, home: dict[Role, Caller]
) -> None:
    limit = world.settings.server.max_body_bytes

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "big", "description": "'
        for _ in range(limit // 10_000 + 2):
            yield b"x" * 10_000
        yield b'"}'

    response = await client.post(
        "/api/agents",
        headers={**home[Role.DEVELOPER].headers, "content-type": "application/json"},
        content=chunks(),
    )

    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")


@pytest.fixture
def strict_limits(world: World) -> Iterator[RateLimiter]:
    state = world.app.state  # type: ignore[attr-defined]
    relaxed = state.rate_limiter
    state.rate_limiter = limiter = RateLimiter(per_minute=1, burst=2, per_hour=100)
    yield limiter
    state.rate_limiter = relaxed


async def test_over_the_rate_limit_is_429_with_retry_after(
    client: httpx.AsyncClient, home: dict[Role, Caller], strict_limits: RateLimiter
) -> None:
    headers = home[Role.VIEWER].headers
    statuses = [(await client.get("/api/agents", headers=headers)).status_code for _ in range(2)]

    refused = await client.get("/api/agents", headers=headers)

    assert statuses == [200, 200]
    assert_error(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
    other_user = await client.get("/api/agents", headers=home[Role.USER].headers)
    assert other_user.status_code == 200  # limits are per caller


async def test_unhandled_error_is_500_without_internals(
    client: httpx.AsyncClient, home: dict[Role, Caller], monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(_view: object) -> None:
        raise RuntimeError("secret internals: /etc/agentguild password=hunter2")

    monkeypatch.setattr(agents_route.AgentOut, "of", explode)

    response = await client.get("/api/agents", headers=home[Role.VIEWER].headers)

    assert_error(response, 500, "internal_error")
    assert "hunter2" not in response.text
    assert "internals" not in response.text
    assert response.json()["error"]["details"]["request_id"] == response.headers["x-request-id"]


async def test_request_id_is_returned_and_a_given_one_kept(client: httpx.AsyncClient) -> None:
    generated = await client.get("/health")
    kept = await client.get("/health", headers={"X-Request-ID": "trace-abc.123"})
    replaced = await client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})

    assert len(generated.headers["x-request-id"]) >= 16
    assert kept.headers["x-request-id"] == "trace-abc.123"
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"


async def test_access_log_has_request_id_and_tenant_but_no_credentials(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    caller = home[Role.VIEWER]
    with structlog.testing.capture_logs(
        processors=[
            structlog.contextvars.merge_contextvars,
            redact_event,
            structlog.processors.format_exc_info,
        ]
    ) as logs:
        await client.get(
            "/api/agents?access_token=leak", headers={**caller.headers, "X-Request-ID": "req-42"}
        )

    entry = next(e for e in logs if e["event"] == "http.request" and e["request_id"] == "req-42")
    assert entry["tenant"] == caller.tenant_id
    assert entry["status"] == 200
    assert entry["route"] == "/api/agents"
    assert caller.token not in str(logs)
    assert "leak" not in str(entry)


async def test_metrics_count_requests_by_route_and_errors_by_type(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    await client.get("/api/agents/no-such-agent", headers=home[Role.VIEWER].headers)

    response = await client.get("/metrics", headers=home[Role.DEVELOPER].headers)

    assert response.status_code == 200
    text = response.text
    assert (
        'agentguild_http_requests_total{method="GET",route="/api/agents/{agent}",status="404"}'
        in text
    )
    assert 'agentguild_http_errors_total{type="not_found"}' in text
    assert "agentguild_http_request_duration_seconds_bucket" in text
    assert "agentguild_http_requests_in_flight" in text


async def test_readiness_reports_a_database_outage_as_503(
    client: httpx.AsyncClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down() -> None:
        raise ConnectionError("database is down")

    monkeypatch.setattr(world.services.db, "ping", down)  # type: ignore[attr-defined]

    response = await client.get("/ready")

    assert_error(response, 503, "unavailable")
    assert response.json()["error"]["details"]["checks"]["database"].startswith("error")
    assert (await client.get("/health")).status_code == 200


async def test_web_ui_is_served_at_root_without_hiding_api_errors(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "index.html").write_text("<h1>agentguild</h1>")
    monkeypatch.setattr(app_module, "WEB_DIR", tmp_path)
    app = create_app(world.settings)

    async with asgi_client(app) as client:
        page = await client.get("/")
        api_miss = await client.get("/api/nothing-here")
        file_miss = await client.get("/no-such-file.js")
        wrong_method = await client.post("/health")

    assert page.status_code == 200
    assert "agentguild" in page.text
    assert_error(api_miss, 404, "not_found")
    assert_error(file_miss, 404, "not_found")
    assert_error(wrong_method, 405, "method_not_allowed")
