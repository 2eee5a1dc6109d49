"""Users, API keys and the tenant-agnostic system operations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_store_support import SqliteBackend, new_tenant

from agentguild.security.api_keys import hash_api_key
from agentguild.security.passwords import verify_password
from agentguild.security.principal import Role
from agentguild.store import ConflictError, Database, NotFoundError
from agentguild.store.models import utcnow


class UsersContract:
    async def test_user_lifecycle_keeps_only_a_password_hash(self, db: Database) -> None:
        principal = await new_tenant(db)
        async with db.repos(principal) as repos:
            user = await repos.users.create("ada@example.com", "s3cret-pw", Role.DEVELOPER)
        assert user.password_hash != "s3cret-pw"
        assert verify_password(user.password_hash, "s3cret-pw")
        async with db.repos(principal) as repos:
            changed = await repos.users.update(
                user.id, role="viewer", is_active=False, password="new-pw"
            )
            listed = await repos.users.list()
        assert changed is not None
        assert (changed.role, changed.is_active) == ("viewer", False)
        assert verify_password(changed.password_hash, "new-pw")
        assert [u.id for u in listed.items] == [user.id]
        async with db.repos(principal) as repos:
            assert await repos.users.delete(user.id)
            assert not await repos.users.delete(user.id)
            assert await repos.users.get(user.id) is None

    async def test_usernames_are_unique_across_tenants(self, db: Database) -> None:
        async with db.repos(await new_tenant(db)) as repos:
            await repos.users.create("ada", "pw-1", Role.USER)
        with pytest.raises(ConflictError, match="ada"):
            async with db.repos(await new_tenant(db)) as repos:
                await repos.users.create("ada", "pw-2", Role.USER)

    async def test_unknown_role_is_rejected(self, db: Database) -> None:
        async with db.repos(await new_tenant(db)) as repos:
            with pytest.raises(ValueError, match="superuser"):
                await repos.users.create("ada", "pw", "superuser")


class ApiKeysContract:
    async def test_key_is_found_by_hash_until_revoked(self, db: Database) -> None:
        principal = await new_tenant(db)
        async with db.repos(principal) as repos:
            key, plaintext = await repos.api_keys.create("ci", Role.USER, None)
        assert plaintext.startswith(key.prefix)
        assert key.key_hash == hash_api_key(plaintext)
        async with db.system() as system:
            found = await system.api_key_by_hash(hash_api_key(plaintext))
            await system.touch_api_key(key.id)
        assert found is not None
        assert (found.id, found.tenant_id, found.role) == (key.id, principal.tenant_id, "user")
        async with db.repos(principal) as repos:
            touched = await repos.api_keys.get(key.id)
            assert await repos.api_keys.revoke(key.id)
            assert not await repos.api_keys.revoke(key.id)
            listed = await repos.api_keys.list()
        assert touched is not None
        assert touched.last_used_at is not None
        assert [(k.id, k.revoked_at is not None) for k in listed.items] == [(key.id, True)]
        async with db.system() as system:
            assert await system.api_key_by_hash(key.key_hash) is None

    async def test_expired_key_is_not_found(self, db: Database) -> None:
        principal = await new_tenant(db)
        async with db.repos(principal) as repos:
            key, _ = await repos.api_keys.create(
                "old", Role.USER, expires_at=utcnow() - timedelta(seconds=1)
            )
        async with db.system() as system:
            assert await system.api_key_by_hash(key.key_hash) is None

    async def test_keys_of_an_inactive_user_are_not_found_and_die_with_the_user(
        self, db: Database
    ) -> None:
        principal = await new_tenant(db)
        async with db.repos(principal) as repos:
            user = await repos.users.create("bob", "pw", Role.USER)
            key, _ = await repos.api_keys.create("laptop", Role.USER, user.id)
            mine = await repos.api_keys.list(user_id=user.id)
            await repos.users.update(user.id, is_active=False)
        assert [k.id for k in mine.items] == [key.id]
        async with db.system() as system:
            assert await system.api_key_by_hash(key.key_hash) is None
        async with db.repos(principal) as repos:
            await repos.users.delete(user.id)
            assert await repos.api_keys.get(key.id) is None

    async def test_key_for_an_unknown_user_is_refused(self, db: Database) -> None:
        async with db.repos(await new_tenant(db)) as repos:
            with pytest.raises(NotFoundError):
                await repos.api_keys.create("x", Role.USER, "usr_missing")


class SystemContract:
    async def test_ensure_tenant_is_idempotent(self, db: Database) -> None:
        async with db.system() as system:
            before = await system.tenant_count()
            first = await system.ensure_tenant("acme")
            second = await system.ensure_tenant("acme")
            after = await system.tenant_count()
            by_id = await system.get_tenant(first.id)
        assert first.id == second.id
        assert by_id is not None
        assert by_id.name == "acme"
        assert after == before + 1
        with pytest.raises(ConflictError):
            async with db.system() as system:
                await system.create_tenant("acme")

    async def test_users_are_found_by_username_and_id(self, db: Database) -> None:
        principal = await new_tenant(db)
        async with db.repos(principal) as repos:
            user = await repos.users.create("carol", "pw", Role.ADMIN)
        async with db.system() as system:
            by_name = await system.user_by_username("carol")
            by_id = await system.get_user(user.id)
            missing = await system.user_by_username("nobody")
        assert by_name is not None
        assert by_id is not None
        assert (by_name.id, by_id.tenant_id, missing) == (user.id, principal.tenant_id, None)


class TestUsersOnSqlite(SqliteBackend, UsersContract):
    pass


class TestApiKeysOnSqlite(SqliteBackend, ApiKeysContract):
    pass


class TestSystemOnSqlite(SqliteBackend, SystemContract):
    pass
