"""Logging in, tokens and API keys: who gets in, and with which role."""

from __future__ import annotations

import time

import httpx
import pytest
from e2e_helpers import PASSWORD, Caller, World, assert_error, bearer, login, unique

from agentguild.security import Role, issue_token
from agentguild.server.routes import auth as auth_route


async def test_login_with_json_returns_a_bearer_token(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    response = await client.post(
        "/auth/token", json={"username": home[Role.USER].username, "password": PASSWORD}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] > 0
    assert (
        await client.get("/api/agents", headers=bearer(body["access_token"]))
    ).status_code == 200


async def test_login_accepts_an_oauth2_password_form(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    form = {"grant_type": "password", "username": home[Role.VIEWER].username, "password": PASSWORD}

    response = await client.post("/auth/token", data=form)

    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"


async def test_wrong_password_and_unknown_user_get_the_same_401(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    wrong = await client.post(
        "/auth/token", json={"username": home[Role.USER].username, "password": "not-it"}
    )
    unknown = await client.post("/auth/token", json={"username": unique("nobody"), "password": "x"})

    assert_error(wrong, 401, "invalid_credentials")
    assert_error(unknown, 401, "invalid_credentials")
    assert wrong.json() == unknown.json()
    assert wrong.headers["www-authenticate"] == "Bearer"


async def test_unknown_user_still_pays_for_a_password_check(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str | None] = []

    async def recording_verify(password_hash: str | None, password: str) -> bool:
        checked.append(password_hash)
        return False

    monkeypatch.setattr(auth_route, "averify_password", recording_verify)

    response = await client.post("/auth/token", json={"username": unique("ghost"), "password": "x"})

    assert response.status_code == 401
    assert checked == [None]  # None: verified against the dummy hash, same cost


async def test_login_with_an_unsupported_body_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/token", content=b"admin:pw", headers={"content-type": "text/plain"}
    )

    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "header",
    [None, "Bearer not-a-token", "Basic YWRtaW46YWRtaW4=", "Bearer ag_" + "x" * 43],
    ids=["missing", "garbage", "basic", "unknown-key"],
)
async def test_requests_without_valid_credentials_are_401(
    client: httpx.AsyncClient, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}

    response = await client.get("/api/agents", headers=headers)

    assert_error(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_expired_and_forged_tokens_are_refused(
    client: httpx.AsyncClient, world: World, home: dict[Role, Caller]
) -> None:
    principal = home[Role.ADMIN].principal
    secret = world.settings.security.jwt_secret
    assert secret is not None
    expired = issue_token(principal, secret.get_secret_value(), 60, now=lambda: time.time() - 3600)
    forged = issue_token(principal, "another-secret-" + "x" * 40, 3600)

    for token in (expired, forged):
        assert_error(await client.get("/api/agents", headers=bearer(token)), 401)


async def test_an_api_key_is_shown_once_works_and_stops_working_when_revoked(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    user = home[Role.USER]
    created = await client.post("/api/keys", headers=user.headers, json={"name": "laptop"})
    assert created.status_code == 201
    key = created.json()
    assert key["key"].startswith("ag_")
    assert key["role"] == "user"

    assert (await client.get("/api/agents", headers=bearer(key["key"]))).status_code == 200
    listed = (await client.get("/api/keys", headers=user.headers)).json()["items"]
    assert [k["id"] for k in listed if k["id"] == key["id"]] == [key["id"]]
    assert all("key" not in k for k in listed)

    revoked = await client.delete(f"/api/keys/{key['id']}", headers=user.headers)
    assert revoked.status_code == 204
    assert_error(await client.get("/api/agents", headers=bearer(key["key"])), 401)


async def test_nobody_creates_a_key_above_their_own_role(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    user = home[Role.USER]

    response = await client.post("/api/keys", headers=user.headers, json={"role": "developer"})

    assert_error(response, 403, "forbidden")


async def test_an_api_key_cannot_mint_more_keys(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    key = (await client.post("/api/keys", headers=home[Role.DEVELOPER].headers, json={})).json()

    response = await client.post("/api/keys", headers=bearer(key["key"]), json={"role": "viewer"})

    assert_error(response, 403, "forbidden")


async def test_admin_cannot_give_a_user_a_key_above_the_users_role(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    body = {"user_id": home[Role.VIEWER].user_id, "role": "admin"}

    response = await client.post("/api/admin/keys", headers=home[Role.ADMIN].headers, json=body)

    assert_error(response, 403, "forbidden")


async def test_another_users_key_cannot_be_revoked_as_ones_own(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    key = (await client.post("/api/keys", headers=home[Role.DEVELOPER].headers, json={})).json()

    response = await client.delete(f"/api/keys/{key['id']}", headers=home[Role.USER].headers)

    assert_error(response, 404, "not_found")
    assert (await client.get("/api/agents", headers=bearer(key["key"]))).status_code == 200


async def test_deactivated_user_is_locked_out_at_once(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    admin = home[Role.ADMIN]
    name = unique("leaver")
    created = await client.post(
        "/api/admin/users", headers=admin.headers, json={"username": name, "password": PASSWORD}
    )
    user_id = created.json()["id"]
    token = await login(client, name, PASSWORD)
    key = (await client.post("/api/keys", headers=bearer(token), json={})).json()["key"]

    response = await client.patch(
        f"/api/admin/users/{user_id}", headers=admin.headers, json={"is_active": False}
    )

    assert response.status_code == 200
    assert_error(await client.get("/api/agents", headers=bearer(token)), 401)
    assert_error(await client.get("/api/agents", headers=bearer(key)), 401)
    bad_login = await client.post("/auth/token", json={"username": name, "password": PASSWORD})
    assert_error(bad_login, 401, "invalid_credentials")


async def test_demoted_users_old_token_gets_only_the_new_role(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    admin = home[Role.ADMIN]
    name = unique("demoted")
    body = {"username": name, "password": PASSWORD, "role": "developer"}
    user_id = (await client.post("/api/admin/users", headers=admin.headers, json=body)).json()["id"]
    token = await login(client, name, PASSWORD)
    new_agent = {"name": unique("agent")}
    assert (
        await client.post("/api/agents", headers=bearer(token), json=new_agent)
    ).status_code == 201

    await client.patch(
        f"/api/admin/users/{user_id}", headers=admin.headers, json={"role": "viewer"}
    )

    response = await client.post(
        "/api/agents", headers=bearer(token), json={"name": unique("agent")}
    )
    assert_error(response, 403, "forbidden")
    assert (await client.get("/api/agents", headers=bearer(token))).status_code == 200


async def test_admin_cannot_demote_or_delete_themselves(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    admin = home[Role.ADMIN]
    path = f"/api/admin/users/{admin.user_id}"

    demote = await client.patch(path, headers=admin.headers, json={"role": "user"})
    delete = await client.delete(path, headers=admin.headers)

    assert_error(demote, 409, "conflict")
    assert_error(delete, 409, "conflict")


async def test_usernames_are_unique_across_tenants(
    client: httpx.AsyncClient, home: dict[Role, Caller], foreign: dict[Role, Caller]
) -> None:
    body = {"username": home[Role.USER].username, "password": PASSWORD}

    response = await client.post("/api/admin/users", headers=foreign[Role.ADMIN].headers, json=body)

    assert_error(response, 409, "conflict")


async def test_me_describes_the_caller_and_the_key_used(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    dev = home[Role.DEVELOPER]
    key = (await client.post("/api/keys", headers=dev.headers, json={"role": "viewer"})).json()

    by_token = (await client.get("/api/me", headers=dev.headers)).json()
    by_key = (await client.get("/api/me", headers=bearer(key["key"]))).json()

    assert by_token["role"] == "developer"
    assert by_token["api_key_id"] is None
    assert "agents:write" in by_token["permissions"]
    assert by_key == {**by_key, "role": "viewer", "api_key_id": key["id"], "user_id": dev.user_id}
    assert "agents:write" not in by_key["permissions"]


async def test_api_key_use_is_recorded_without_a_write_per_request(
    client: httpx.AsyncClient, home: dict[Role, Caller]
) -> None:
    user = home[Role.USER]
    key = (await client.post("/api/keys", headers=user.headers, json={"name": "used"})).json()

    await client.get("/api/me", headers=bearer(key["key"]))

    listed = (await client.get("/api/keys", headers=user.headers)).json()["items"]
    assert next(k for k in listed if k["id"] == key["id"])["last_used_at"] is not None
