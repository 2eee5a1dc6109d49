"""`/api/conversations`: CRUD, paginated messages, who sees which conversations."""

from __future__ import annotations

import httpx
from e2e_helpers import Caller, World, assert_error, unique

from agentguild.security import Role
from agentguild.types import Message


async def _create(client: httpx.AsyncClient, caller: Caller, **body: object) -> dict[str, object]:
    response = await client.post("/api/conversations", headers=caller.headers, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


async def test_created_conversation_belongs_to_its_creator(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    user = home[Role.USER]

    conv = await _create(client, user, title="Trip plans", agent="assistant", metadata={"k": 1})

    assert conv["user_id"] == user.user_id
    assert conv["title"] == "Trip plans"
    assert conv["metadata"] == {"k": 1}
    assert conv["agent_id"] is not None
    got = await client.get(f"/api/conversations/{conv['id']}", headers=user.headers)
    assert got.json() == conv


async def test_users_see_only_their_own_conversations_developers_all(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    mine = await _create(client, home[Role.USER], title=unique("mine"))
    dev = home[Role.DEVELOPER]
    theirs = await _create(client, dev, title=unique("theirs"))

    user_view = await client.get("/api/conversations", headers=home[Role.USER].headers)
    dev_view = await client.get("/api/conversations", headers=dev.headers, params={"limit": 200})

    user_ids = {c["id"] for c in user_view.json()["items"]}
    assert mine["id"] in user_ids
    assert theirs["id"] not in user_ids
    assert {mine["id"], theirs["id"]} <= {c["id"] for c in dev_view.json()["items"]}
    hidden = await client.get(f"/api/conversations/{theirs['id']}", headers=home[Role.USER].headers)
    assert_error(hidden, 404, "not_found")


async def test_title_and_metadata_can_be_changed(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    user = home[Role.USER]
    conv = await _create(client, user)

    response = await client.patch(
        f"/api/conversations/{conv['id']}", headers=user.headers, json={"title": "Renamed"}
    )

    assert response.status_code == 200
    assert response.json()["title"] == "Renamed"


async def test_deleting_needs_data_delete(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    conv = await _create(client, home[Role.USER])
    path = f"/api/conversations/{conv['id']}"

    refused = await client.delete(path, headers=home[Role.USER].headers)
    deleted = await client.delete(path, headers=home[Role.DEVELOPER].headers)

    assert_error(refused, 403, "forbidden")
    assert deleted.status_code == 204
    assert_error(await client.get(path, headers=home[Role.DEVELOPER].headers), 404)


async def test_unknown_agent_is_404(client: httpx.AsyncClient, home: dict[Role, Caller]) -> None:
    response = await client.post(
        "/api/conversations", headers=home[Role.USER].headers, json={"agent": unique("nope")}
    )

    assert_error(response, 404, "not_found")


async def test_messages_are_paginated_in_order(
    client: httpx.AsyncClient, world: World, home: dict[Role, Caller]
) -> None:
    user = home[Role.USER]
    conv = await _create(client, user)
    texts = [f"message {i}" for i in range(7)]
    async with world.services.db.repos(user.principal) as repos:  # type: ignore[attr-defined]
        await repos.messages.append(conv["id"], [Message.user(t) for t in texts])

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        response = await client.get(
            f"/api/conversations/{conv['id']}/messages", headers=user.headers, params=params
        )
        page = response.json()
        assert len(page["items"]) <= 3
        seen += [m["content"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == texts


async def test_messages_of_a_foreign_conversation_look_missing(
    client: httpx.AsyncClient, home: dict[Role, Caller], foreign: dict[Role, Caller]
) -> None:
    conv = await _create(client, foreign[Role.USER])

    response = await client.get(
        f"/api/conversations/{conv['id']}/messages", headers=home[Role.ADMIN].headers
    )

    assert_error(response, 404, "not_found")
