"""Agents (versioned, soft-deleted) and conversations."""

from __future__ import annotations

import pytest
from test_store_support import AGENT_CONFIG, SqliteBackend, new_tenant

from agentguild.store import ConflictError, Database, InvalidCursorError, NotFoundError
from agentguild.types import Message


class AgentsContract:
    async def test_created_agent_is_version_one_with_its_config(self, db: Database) -> None:
        principal = await new_tenant(db)
        async with db.repos(principal) as repos:
            created = await repos.agents.create("helper", "helps", AGENT_CONFIG, "usr_1")
        async with db.repos(principal) as repos:
            by_id = await repos.agents.get(created.id)
            by_name = await repos.agents.get_by_name("helper")
            versions = await repos.agents.versions(created.id)
        assert by_id == by_name == created
        assert (created.version, created.config, created.description) == (1, AGENT_CONFIG, "helps")
        assert [(v.version, v.created_by) for v in versions] == [(1, "usr_1")]

    async def test_duplicate_live_name_conflicts(self, db: Database) -> None:
        principal = await new_tenant(db)
        async with db.repos(principal) as repos:
            await repos.agents.create("helper", "", AGENT_CONFIG, None)
        with pytest.raises(ConflictError, match="helper"):
            async with db.repos(principal) as repos:
                await repos.agents.create("helper", "", AGENT_CONFIG, None)

    async def test_same_name_in_another_tenant_is_fine(self, db: Database) -> None:
        for _ in range(2):
            async with db.repos(await new_tenant(db)) as repos:
                await repos.agents.create("helper", "", AGENT_CONFIG, None)

    async def test_config_change_creates_a_new_version_and_keeps_the_old(
        self, db: Database
    ) -> None:
        principal = await new_tenant(db)
        new_config = {**AGENT_CONFIG, "tools": []}
        async with db.repos(principal) as repos:
            agent = await repos.agents.create("helper", "", AGENT_CONFIG, "usr_1")
            updated = await repos.agents.update(agent.id, config=new_config, created_by="usr_2")
        async with db.repos(principal) as repos:
            first = await repos.agents.get_version(agent.id, 1)
            current = await repos.agents.get(agent.id)
            versions = await repos.agents.versions(agent.id)
        assert updated is not None
        assert updated == current
        assert (updated.version, updated.config) == (2, new_config)
        assert first is not None
        assert first.config == AGENT_CONFIG
        assert [(v.version, v.created_by) for v in versions] == [(1, "usr_1"), (2, "usr_2")]

    async def test_update_without_a_config_change_keeps_the_version(self, db: Database) -> None:
        principal = await new_tenant(db)
        async with db.repos(principal) as repos:
            agent = await repos.agents.create("helper", "old", AGENT_CONFIG, None)
            same = await repos.agents.update(agent.id, config=dict(AGENT_CONFIG))
            described = await repos.agents.update(agent.id, description="new")
        assert same is not None
        assert same.version == 1
        assert described is not None
        assert (described.version, described.description) == (1, "new")

    async def test_soft_deleted_agent_disappears_and_frees_its_name(self, db: Database) -> None:
        principal = await new_tenant(db)
        async with db.repos(principal) as repos:
            agent = await repos.agents.create("helper", "", AGENT_CONFIG, None)
            assert await repos.agents.delete(agent.id)
            assert not await repos.agents.delete(agent.id)
            assert await repos.agents.get(agent.id) is None
            assert await repos.agents.get_version(agent.id, 1) is None
            assert await repos.agents.update(agent.id, description="x") is None
            assert (await repos.agents.list()).items == []
            replacement = await repos.agents.create("helper", "", AGENT_CONFIG, None)
        assert replacement.id != agent.id

    async def test_list_pages_newest_first_without_overlap(self, db: Database) -> None:
        principal = await new_tenant(db)
        async with db.repos(principal) as repos:
            ids = [
                (await repos.agents.create(f"a{i}", "", AGENT_CONFIG, None)).id for i in range(7)
            ]
            seen: list[str] = []
            cursor = None
            for _ in range(4):
                page = await repos.agents.list(limit=3, cursor=cursor)
                seen += [a.id for a in page.items]
                cursor = page.next_cursor
                if cursor is None:
                    break
        assert seen == list(reversed(ids))

    async def test_malformed_cursor_is_rejected(self, db: Database) -> None:
        async with db.repos(await new_tenant(db)) as repos:
            with pytest.raises(InvalidCursorError):
                await repos.agents.list(cursor="not-a-cursor")


class ConversationsContract:
    async def test_conversation_lifecycle(self, db: Database) -> None:
        principal = await new_tenant(db)
        async with db.repos(principal) as repos:
            agent = await repos.agents.create("helper", "", AGENT_CONFIG, None)
            created = await repos.conversations.create("usr_1", agent.id, "first")
        async with db.repos(principal) as repos:
            renamed = await repos.conversations.update(created.id, title="renamed", extra={"k": 1})
            assert await repos.conversations.touch(created.id)
            fetched = await repos.conversations.get(created.id)
        assert renamed is not None
        assert (renamed.title, renamed.extra) == ("renamed", {"k": 1})
        assert fetched is not None
        assert fetched.agent_id == agent.id
        assert fetched.updated_at >= created.updated_at
        async with db.repos(principal) as repos:
            assert await repos.conversations.delete(created.id)
            assert not await repos.conversations.delete(created.id)
            assert await repos.conversations.get(created.id) is None

    async def test_create_with_an_unknown_agent_raises_not_found(self, db: Database) -> None:
        async with db.repos(await new_tenant(db)) as repos:
            with pytest.raises(NotFoundError):
                await repos.conversations.create("usr_1", "agt_missing", "")

    async def test_list_filters_by_user_and_pages(self, db: Database) -> None:
        principal = await new_tenant(db)
        async with db.repos(principal) as repos:
            mine = [(await repos.conversations.create("usr_1", None, f"{i}")).id for i in range(5)]
            await repos.conversations.create("usr_2", None, "theirs")
            first = await repos.conversations.list(user_id="usr_1", limit=3)
            second = await repos.conversations.list(
                user_id="usr_1", limit=3, cursor=first.next_cursor
            )
            everyone = await repos.conversations.list(limit=100)
        assert [c.id for c in first.items + second.items] == list(reversed(mine))
        assert second.next_cursor is None
        assert len(everyone.items) == 6

    async def test_deleting_a_conversation_deletes_its_messages_and_runs(
        self, db: Database
    ) -> None:
        principal = await new_tenant(db)
        async with db.repos(principal) as repos:
            conversation = await repos.conversations.create("usr_1", None, "")
            run = await repos.runs.create(conversation.id, None, None, "usr_1", "wait")
            await repos.messages.append(conversation.id, [Message.user("hi")], run.id)
        async with db.repos(principal) as repos:
            await repos.conversations.delete(conversation.id)
        async with db.repos(principal) as repos:
            assert await repos.runs.get(run.id) is None
            assert await repos.messages.count(conversation.id) == 0


class TestAgentsOnSqlite(SqliteBackend, AgentsContract):
    pass


class TestConversationsOnSqlite(SqliteBackend, ConversationsContract):
    pass
