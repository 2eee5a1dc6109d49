"""Messages: consecutive numbering under concurrency, round trips, windows."""

from __future__ import annotations

import asyncio

import pytest
from test_store_support import SqliteBackend, new_tenant

from agentguild.security.principal import Principal
from agentguild.store import Database, NotFoundError
from agentguild.types import ImagePart, Message, TextPart, ToolCall


async def _conversation(db: Database, principal: Principal) -> str:
    async with db.repos(principal) as repos:
        return (await repos.conversations.create("usr_1", None, "")).id


class MessagesContract:
    async def test_history_round_trips_every_kind_of_message(self, db: Database) -> None:
        principal = await new_tenant(db)
        conversation_id = await _conversation(db, principal)
        call = ToolCall("call_1", "calculator", '{"expression": "2+2"}')
        messages = [
            Message.system("be brief"),
            Message.user([TextPart("what is this?"), ImagePart("https://x.test/a.png", "low")]),
            Message.assistant(None, tool_calls=[call]),
            Message.tool("call_1", "4", name="calculator"),
            Message.assistant("It is 4.", name="helper"),
        ]
        async with db.repos(principal) as repos:
            records = await repos.messages.append(conversation_id, messages, "run_1")
        async with db.repos(principal) as repos:
            history = await repos.messages.history(conversation_id)
            count = await repos.messages.count(conversation_id)
        assert history == messages
        assert count == 5
        assert [r.seq for r in records] == [0, 1, 2, 3, 4]
        assert {r.run_id for r in records} == {"run_1"}

    async def test_concurrent_appends_get_unique_consecutive_seqs(self, db: Database) -> None:
        principal = await new_tenant(db)
        conversation_id = await _conversation(db, principal)

        async def append(i: int) -> list[int]:
            async with db.repos(principal) as repos:
                await repos.conversations.get(conversation_id)  # a read first, as the runner does
                records = await repos.messages.append(
                    conversation_id, [Message.user(f"q{i}"), Message.assistant(f"a{i}")]
                )
            return [r.seq for r in records]

        results = await asyncio.gather(*(append(i) for i in range(20)))

        assert sorted(seq for seqs in results for seq in seqs) == list(range(40))
        assert all(second == first + 1 for first, second in results)
        async with db.repos(principal) as repos:
            history = await repos.messages.history(conversation_id)
        for question, answer in zip(history[::2], history[1::2], strict=True):
            assert question.text[1:] == answer.text[1:]

    async def test_appending_to_a_missing_conversation_raises(self, db: Database) -> None:
        async with db.repos(await new_tenant(db)) as repos:
            with pytest.raises(NotFoundError):
                await repos.messages.append("conv_missing", [Message.user("hi")])
            with pytest.raises(NotFoundError):
                await repos.messages.append("conv_missing", [])

    async def test_list_pages_forward_and_backward(self, db: Database) -> None:
        principal = await new_tenant(db)
        conversation_id = await _conversation(db, principal)
        async with db.repos(principal) as repos:
            await repos.messages.append(conversation_id, [Message.user(str(i)) for i in range(7)])
            first = await repos.messages.list(conversation_id, limit=3)
            assert first.next_cursor is not None
            second = await repos.messages.list(
                conversation_id, limit=3, after_seq=int(first.next_cursor)
            )
            assert second.next_cursor is not None
            third = await repos.messages.list(
                conversation_id, limit=3, after_seq=int(second.next_cursor)
            )
            latest = await repos.messages.list(conversation_id, limit=3, before_seq=7)
            assert latest.next_cursor is not None
            older = await repos.messages.list(
                conversation_id, limit=5, before_seq=int(latest.next_cursor)
            )
            between = await repos.messages.list(conversation_id, after_seq=1, before_seq=4)
        assert [m.seq for m in first.items + second.items + third.items] == list(range(7))
        assert third.next_cursor is None
        assert [m.seq for m in latest.items] == [4, 5, 6]
        assert ([m.seq for m in older.items], older.next_cursor) == ([0, 1, 2, 3], None)
        assert [m.seq for m in between.items] == [2, 3]


class TestMessagesOnSqlite(SqliteBackend, MessagesContract):
    pass
