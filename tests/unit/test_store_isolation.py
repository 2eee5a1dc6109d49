"""Tenant isolation: another tenant's ids behave exactly like missing ones, everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from test_store_support import AGENT_CONFIG, SqliteBackend, new_tenant

from agentguild.security.principal import Principal, Role
from agentguild.store import Database, NotFoundError
from agentguild.store.models import utcnow
from agentguild.types import Message, ToolCall


@dataclass
class TenantData:
    principal: Principal
    agent_id: str
    conversation_id: str
    run_id: str
    tool_call_id: str
    user_id: str
    key_id: str


async def _populate(db: Database) -> TenantData:
    principal = await new_tenant(db)
    async with db.repos(principal) as repos:
        agent = await repos.agents.create("helper", "", AGENT_CONFIG, None)
        conversation = await repos.conversations.create("usr_test", agent.id, "secret")
        run = await repos.runs.create(conversation.id, agent.id, 1, "usr_test", "wait", "running")
        await repos.messages.append(conversation.id, [Message.user("private")], run.id)
        call = await repos.tool_calls.start(run.id, conversation.id, ToolCall("c", "t", "{}"))
        await repos.usage.record("usr_test", None, run.id, "m", 10, 10)
        user = await repos.users.create(f"user-{principal.tenant_id}", "pw", Role.USER)
        key, _ = await repos.api_keys.create("k", Role.USER, user.id)
    return TenantData(principal, agent.id, conversation.id, run.id, call.id, user.id, key.id)


class IsolationContract:
    @pytest.fixture
    async def tenants(self, db: Database) -> tuple[TenantData, Principal]:
        return await _populate(db), await new_tenant(db)

    async def test_reads_of_another_tenant_find_nothing(
        self, db: Database, tenants: tuple[TenantData, Principal]
    ) -> None:
        a, b = tenants
        async with db.repos(b) as repos:
            assert await repos.agents.get(a.agent_id) is None
            assert await repos.agents.get_by_name("helper") is None
            assert (await repos.agents.list()).items == []
            assert await repos.agents.versions(a.agent_id) == []
            assert await repos.agents.get_version(a.agent_id, 1) is None
            assert await repos.conversations.get(a.conversation_id) is None
            assert (await repos.conversations.list()).items == []
            assert (await repos.conversations.list(user_id="usr_test")).items == []
            assert (await repos.messages.list(a.conversation_id)).items == []
            assert await repos.messages.history(a.conversation_id) == []
            assert await repos.messages.count(a.conversation_id) == 0
            assert await repos.runs.get(a.run_id) is None
            assert (await repos.runs.list()).items == []
            assert (await repos.runs.list(conversation_id=a.conversation_id)).items == []
            assert await repos.tool_calls.list(a.run_id) == []
            assert await repos.usage.summary(utcnow() - timedelta(hours=1)) == []
            assert await repos.users.get(a.user_id) is None
            assert (await repos.users.list()).items == []
            assert await repos.api_keys.get(a.key_id) is None
            assert (await repos.api_keys.list()).items == []

    async def test_writes_to_another_tenant_change_nothing(
        self, db: Database, tenants: tuple[TenantData, Principal]
    ) -> None:
        a, b = tenants
        async with db.repos(b) as repos:
            assert await repos.agents.update(a.agent_id, description="x", config={}) is None
            assert not await repos.agents.delete(a.agent_id)
            assert await repos.conversations.update(a.conversation_id, title="x") is None
            assert not await repos.conversations.touch(a.conversation_id)
            assert not await repos.conversations.delete(a.conversation_id)
            assert await repos.runs.set_status(a.run_id, "cancelled") is None
            assert not await repos.runs.add_usage(a.run_id, 1, 1)
            assert await repos.runs.mark_interrupted_running() == 0
            assert not await repos.tool_calls.finish(a.tool_call_id, "x", False, 1.0)
            assert await repos.users.update(a.user_id, role=Role.ADMIN, is_active=False) is None
            assert not await repos.users.delete(a.user_id)
            assert not await repos.api_keys.revoke(a.key_id)
        async with db.repos(a.principal) as repos:
            agent = await repos.agents.get(a.agent_id)
            conversation = await repos.conversations.get(a.conversation_id)
            run = await repos.runs.get(a.run_id)
            (call,) = await repos.tool_calls.list(a.run_id)
            user = await repos.users.get(a.user_id)
            key = await repos.api_keys.get(a.key_id)
        assert agent is not None
        assert (agent.version, agent.description) == (1, "")
        assert conversation is not None
        assert conversation.title == "secret"
        assert run is not None
        assert (run.status, run.prompt_tokens) == ("running", 0)
        assert call.status == "running"
        assert user is not None
        assert (user.role, user.is_active) == ("user", True)
        assert key is not None
        assert key.revoked_at is None

    async def test_references_to_another_tenant_are_refused(
        self, db: Database, tenants: tuple[TenantData, Principal]
    ) -> None:
        a, b = tenants
        async with db.repos(b) as repos:
            with pytest.raises(NotFoundError):
                await repos.conversations.create("usr_test", a.agent_id, "")
            with pytest.raises(NotFoundError):
                await repos.messages.append(a.conversation_id, [Message.user("intrusion")])
            with pytest.raises(NotFoundError):
                await repos.runs.create(a.conversation_id, None, None, None, "wait")
            with pytest.raises(NotFoundError):
                await repos.tool_calls.start(a.run_id, a.conversation_id, ToolCall("c", "t", "{}"))
            with pytest.raises(NotFoundError):
                await repos.api_keys.create("k", Role.ADMIN, a.user_id)
        async with db.repos(a.principal) as repos:
            assert await repos.messages.count(a.conversation_id) == 1


class TestIsolationOnSqlite(SqliteBackend, IsolationContract):
    pass
