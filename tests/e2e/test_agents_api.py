"""`/api/agents`: CRUD, versions, validation against the server's models and tools."""

from __future__ import annotations

import httpx
import pytest
from e2e_helpers import Caller, assert_error, unique

from agentguild.security import Role


async def _create(client: httpx.AsyncClient, caller: Caller, **body: object) -> dict[str, object]:
    body.setdefault("name", unique("agent"))
    response = await client.post("/api/agents", headers=caller.headers, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


async def test_created_agent_can_be_read_by_id_and_by_name(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    dev = home[Role.DEVELOPER]
    config = {"model": "scripted", "tools": ["calculator"], "system_prompt": "Be brief."}

    agent = await _create(client, dev, description="helps", config=config)

    assert agent["version"] == 1
    assert agent["config"]["tools"] == ["calculator"]  # type: ignore[index]
    for ref in (agent["id"], agent["name"]):
        got = await client.get(f"/api/agents/{ref}", headers=home[Role.VIEWER].headers)
        assert got.status_code == 200
        assert got.json() == agent


async def test_listing_pages_through_every_agent(
    client: httpx.AsyncClient, foreign: dict[Role, Caller]
) -> None:
    dev = foreign[Role.DEVELOPER]
    made = {str((await _create(client, dev))["id"]) for _ in range(3)}

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/agents", headers=dev.headers, params=params)).json()
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert made <= set(seen)
    assert len(seen) == len(set(seen))


async def test_changing_the_config_makes_a_new_version_and_keeps_the_old(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    dev = home[Role.DEVELOPER]
    agent = await _create(client, dev, config={"system_prompt": "v1"})

    updated = await client.patch(
        f"/api/agents/{agent['id']}", headers=dev.headers, json={"config": {"system_prompt": "v2"}}
    )
    described = await client.patch(
        f"/api/agents/{agent['id']}", headers=dev.headers, json={"description": "same config"}
    )

    assert updated.json()["version"] == 2
    assert described.json()["version"] == 2
    versions = (await client.get(f"/api/agents/{agent['id']}/versions", headers=dev.headers)).json()
    assert [(v["version"], v["config"]["system_prompt"]) for v in versions] == [
        (1, "v1"),
        (2, "v2"),
    ]
    first = await client.get(f"/api/agents/{agent['id']}/versions/1", headers=dev.headers)
    assert first.json()["config"]["system_prompt"] == "v1"
    assert_error(
        await client.get(f"/api/agents/{agent['id']}/versions/9", headers=dev.headers), 404
    )


async def test_duplicate_name_is_409(client: httpx.AsyncClient, home: dict[Role, Caller]) -> None:
    dev = home[Role.DEVELOPER]
    agent = await _create(client, dev)

    response = await client.post("/api/agents", headers=dev.headers, json={"name": agent["name"]})

    assert_error(response, 409, "conflict")


async def test_the_same_name_is_free_in_another_tenant(
    client: httpx.AsyncClient, home: dict[Role, Caller], foreign: dict[Role, Caller]
) -> None:
    agent = await _create(client, home[Role.DEVELOPER])

    await _create(client, foreign[Role.DEVELOPER], name=agent["name"])


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"model": "gpt-nonexistent"}, "gpt-nonexistent"),
        ({"tools": ["rm_rf"]}, "rm_rf"),
    ],
    ids=["unknown-model", "unknown-tool"],
)
async def test_unknown_model_or_tool_is_422_naming_it(
    client: httpx.AsyncClient, home: dict[Role, Caller], config: dict[str, object], needle: str
) -> None:
    body = {"name": unique("agent"), "config": config}

    response = await client.post("/api/agents", headers=home[Role.DEVELOPER].headers, json=body)

    assert_error(response, 422, "invalid_agent_config")
    assert needle in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "bad name!"},
        {"name": "ok", "config": {"max_turns": 0}},
        {"name": "ok", "config": {"kind": "team"}},
        {"name": "ok", "config": {"base_url": "http://169.254.169.254"}},
        {"name": "ok", "description": "x" * 2001},
    ],
    ids=["name", "max-turns", "kind", "unknown-field", "description-length"],
)
async def test_malformed_agents_are_422(
    client: httpx.AsyncClient, home: dict[Role, Caller], body: dict[str, object]
) -> None:
    response = await client.post("/api/agents", headers=home[Role.DEVELOPER].headers, json=body)

    assert_error(response, 422, "validation_error")


async def test_deleted_agent_is_gone_and_its_name_reusable(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    dev = home[Role.DEVELOPER]
    agent = await _create(client, dev)

    deleted = await client.delete(f"/api/agents/{agent['id']}", headers=dev.headers)

    assert deleted.status_code == 204
    assert_error(await client.get(f"/api/agents/{agent['id']}", headers=dev.headers), 404)
    await _create(client, dev, name=agent["name"])


async def test_another_tenants_agent_looks_missing(
    client: httpx.AsyncClient, home: dict[Role, Caller], foreign: dict[Role, Caller]
) -> None:
    agent = await _create(client, foreign[Role.DEVELOPER])
    admin = home[Role.ADMIN]

    for method in ("GET", "PATCH", "DELETE"):
        body = {"description": "mine now"} if method == "PATCH" else None
        response = await client.request(
            method, f"/api/agents/{agent['id']}", headers=admin.headers, json=body
        )
        assert_error(response, 404, "not_found")
    still = await client.get(f"/api/agents/{agent['id']}", headers=foreign[Role.VIEWER].headers)
    assert still.json()["description"] == agent["description"]
