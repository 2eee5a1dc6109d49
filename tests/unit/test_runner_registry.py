"""The in-process run registry: event logs that replay then follow, cancellation, eviction."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from agentguild.runtime.run_registry import RunHandle, RunLog, RunMode, RunRegistry


def _event(n: int) -> dict[str, object]:
    return {"type": "text_delta", "data": {"text": str(n), "agent": "a"}}


async def _collect(items: AsyncIterator[tuple[int, dict[str, object]]]) -> list[int]:
    return [seq async for seq, _ in items]


async def test_log_numbers_events_from_one_and_replays_after_a_given_seq() -> None:
    log = RunLog()
    seqs = [log.append(_event(n)) for n in range(3)]
    log.close()

    assert seqs == [1, 2, 3]
    assert await _collect(log.follow()) == [1, 2, 3]
    assert await _collect(log.follow(after_seq=2)) == [3]
    assert await _collect(log.follow(after_seq=9)) == []


async def test_follower_gets_live_events_until_the_log_closes() -> None:
    log = RunLog()
    log.append(_event(1))

    def more_then_close() -> None:  # runs once the follower waits for new events
        log.append(_event(2))
        log.append(_event(3))
        log.close()

    asyncio.get_running_loop().call_soon(more_then_close)

    assert await _collect(log.follow()) == [1, 2, 3]


class RecordingSink:
    """An event bus as a log's sink: what the log forwarded to it."""

    def __init__(self) -> None:
        self.published: list[int] = []
        self.ended: list[str] = []

    def publish(self, run_id: str, seq: int, event: dict[str, object]) -> None:
        self.published.append(seq)

    def close_run(self, run_id: str) -> None:
        self.ended.append(run_id)


async def test_an_abandoned_log_ends_here_but_leaves_the_shared_stream_open() -> None:
    # Given two runs' logs forwarding to their bus
    sink = RecordingSink()
    ended, taken_over = RunLog(run_id="run_1", sink=sink), RunLog(run_id="run_2", sink=sink)
    for log in (ended, taken_over):
        log.append(_event(1))
    # When one ends here, and the other is abandoned (another process continues it)
    ended.close()
    taken_over.abandon()
    # Then both are complete here, but only the first one's shared stream was ended
    assert (ended.closed, taken_over.closed) == (True, True)
    assert sink.ended == ["run_1"]
    assert await _collect(taken_over.follow()) == [1]


def _handle(mode: RunMode, run_id: str = "run_1", tenant: str = "t1") -> RunHandle:
    return RunHandle(run_id, tenant_id=tenant, conversation_id="conv_1", agent="a", mode=mode)


async def _forever() -> None:
    await asyncio.Event().wait()


async def _attach_forever(handle: RunHandle) -> None:
    handle.task = asyncio.create_task(_forever())


async def test_stream_run_is_cancelled_when_its_last_follower_leaves() -> None:
    handle = _handle("stream")
    await _attach_forever(handle)
    assert handle.task is not None
    handle.log.append(_event(1))
    first = handle.events()
    second = handle.events()

    assert await anext(first) == (1, _event(1))
    assert await anext(second) == (1, _event(1))
    await first.aclose()
    assert not handle.task.cancelling()
    await second.aclose()

    with pytest.raises(asyncio.CancelledError):
        await handle.task


@pytest.mark.parametrize("mode", ["background", "wait"])
async def test_other_runs_outlive_their_followers(mode: RunMode) -> None:
    handle = _handle(mode)
    await _attach_forever(handle)
    assert handle.task is not None
    handle.log.append(_event(1))

    async with contextlib.aclosing(handle.events()) as events:
        await anext(events)

    assert not handle.task.cancelling()
    handle.task.cancel()


async def test_wait_returns_once_the_run_finishes() -> None:
    handle = _handle("wait")
    asyncio.get_running_loop().call_soon(handle.finish, "completed")

    assert (await handle.wait()).status == "completed"
    assert handle.done
    assert handle.log.closed
    assert not handle.cancel()


def test_finish_rejects_a_non_final_status() -> None:
    with pytest.raises(ValueError, match="not a final run status"):
        _handle("wait").finish("running")


def test_registry_hides_other_tenants_runs() -> None:
    registry = RunRegistry()
    registry.add(_handle("wait", "run_1", tenant="t1"))

    assert registry.get("run_1", "t1") is not None
    assert registry.get("run_1", "t2") is None
    assert registry.count_active("t1") == 1
    assert registry.count_active("t2") == 0


def test_registry_evicts_the_oldest_finished_runs_beyond_its_bound() -> None:
    registry = RunRegistry(keep_finished=2)
    handles = [_handle("wait", f"run_{n}") for n in range(3)]
    for handle in handles:
        registry.add(handle)
        handle.finish("completed")
        registry.finished(handle)

    assert registry.get("run_0", "t1") is None
    assert registry.get("run_1", "t1") is not None
    assert registry.get("run_2", "t1") is not None
    assert registry.count_active("t1") == 0


async def test_abandoning_a_stream_run_nobody_follows_cancels_it() -> None:
    handle = _handle("stream")
    await _attach_forever(handle)
    assert handle.task is not None
    follower = handle.events()
    handle.log.append(_event(1))
    await anext(follower)

    handle.abandon()  # the starting client left, but someone still follows
    assert not handle.task.cancelling()
    await follower.aclose()  # the last follower leaves

    with pytest.raises(asyncio.CancelledError):
        await handle.task


async def test_abandoning_a_stream_run_that_was_never_followed_cancels_it() -> None:
    handle = _handle("stream")
    await _attach_forever(handle)
    assert handle.task is not None

    handle.abandon()

    with pytest.raises(asyncio.CancelledError):
        await handle.task
