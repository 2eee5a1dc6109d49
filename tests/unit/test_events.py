"""The in-process event bus: replay then follow, resume after a seq, end of run, expiry,
and the choice of bus from settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from agentguild._platform_settings import ServerSettings
from agentguild.errors import ConfigError
from agentguild.runtime import InProcessEventBus, RedisEventBus, event_bus_from_settings
from agentguild.runtime.events import EventBus
from agentguild.types import JSONObject


def _event(n: int) -> JSONObject:
    return {"type": "text_delta", "data": {"text": f"t{n}", "agent": "a"}}


_DONE: JSONObject = {"type": "run_completed", "data": {"run_id": "r", "status": "completed"}}


async def _rest(events: AsyncGenerator[tuple[int, JSONObject], None]) -> list[int]:
    return [seq async for seq, _ in events]


async def test_a_subscriber_gets_the_past_events_then_live_ones_until_the_end() -> None:
    bus = InProcessEventBus()
    bus.publish("r", 1, _event(1))
    bus.publish("r", 2, _event(2))
    events = bus.subscribe("r")

    replayed = [await anext(events), await anext(events)]
    live = asyncio.ensure_future(anext(events))
    bus.publish("r", 3, _event(3))
    third = await live
    bus.publish("r", 4, _DONE)

    assert [seq for seq, _ in replayed] == [1, 2]
    assert third == (3, _event(3))
    assert await _rest(events) == [4]


async def test_a_subscriber_resumes_after_the_seq_it_gives() -> None:
    bus = InProcessEventBus()
    for seq in range(1, 4):
        bus.publish("r", seq, _event(seq))
    bus.publish("r", 4, _DONE)

    assert await _rest(bus.subscribe("r", after_seq=2)) == [3, 4]
    assert await _rest(bus.subscribe("r", after_seq=4)) == []


async def test_resuming_where_a_subscriber_left_gives_each_event_once() -> None:
    bus = InProcessEventBus()
    log = bus.run_log("r")
    for n in range(1, 6):
        log.append(_event(n))
    first = bus.subscribe("r")
    seen = [await anext(first), await anext(first)]
    await first.aclose()
    log.append(_DONE)

    seen += [item async for item in bus.subscribe("r", after_seq=seen[-1][0])]

    assert [seq for seq, _ in seen] == [1, 2, 3, 4, 5, 6]


async def test_closing_a_run_ends_its_subscribers_without_a_terminal_event() -> None:
    bus = InProcessEventBus()
    bus.publish("r", 1, _event(1))
    events = bus.subscribe("r")
    assert (await anext(events))[0] == 1
    pending = asyncio.ensure_future(_rest(events))

    bus.close_run("r")

    assert await pending == []


async def test_republished_events_are_ignored_and_gaps_refused() -> None:
    bus = InProcessEventBus()
    bus.publish("r", 1, _event(1))
    bus.publish("r", 1, _event(99))

    with pytest.raises(ValueError, match="follows event 1"):
        bus.publish("r", 3, _event(3))
    bus.publish("r", 2, _DONE)
    assert [e async for _, e in bus.subscribe("r")] == [_event(1), _DONE]


async def test_finished_runs_expire_and_running_ones_stay() -> None:
    bus = InProcessEventBus(finished_ttl_s=0.0)
    bus.run_log("done").append(_event(1))
    bus.run_log("live").append(_event(1))

    bus.close_run("done")

    assert not await bus.has_run("done")
    assert await bus.has_run("live")


async def test_the_bus_keeps_at_most_keep_finished_ended_runs() -> None:
    bus = InProcessEventBus(keep_finished=1)
    for run_id in ("a", "b"):
        bus.run_log(run_id).append(_event(1))
        bus.close_run(run_id)

    assert not await bus.has_run("a")
    assert await bus.has_run("b")


def test_the_embedded_default_is_the_in_process_bus() -> None:
    bus = event_bus_from_settings(ServerSettings())

    assert isinstance(bus, InProcessEventBus)
    assert isinstance(bus, EventBus)
    assert not bus.shared


async def test_auto_picks_redis_when_a_redis_url_is_set() -> None:
    bus = event_bus_from_settings(
        ServerSettings(redis_url="redis://127.0.0.1:1/0", event_stream_ttl_s=600)
    )

    assert isinstance(bus, RedisEventBus)
    assert bus.shared
    assert bus.finished_ttl_s == 600
    await bus.aclose()


def test_memory_can_be_forced_and_redis_needs_a_url() -> None:
    forced = ServerSettings(redis_url="redis://127.0.0.1:1/0", event_bus="memory")
    assert isinstance(event_bus_from_settings(forced), InProcessEventBus)

    with pytest.raises(ConfigError, match="redis_url is not set"):
        event_bus_from_settings(ServerSettings(event_bus="redis"))


async def test_a_taken_over_run_numbers_its_new_events_after_the_old_ones() -> None:
    bus = InProcessEventBus()
    old = bus.run_log("r")
    old.append(_event(1))
    old.append(_event(2))
    old.close()  # its process stopped

    log = await bus.resume_log("r")
    seq = log.append(_event(3))
    log.append(_DONE)

    assert seq == 3
    assert await _rest(bus.subscribe("r")) == [1, 2, 3, 4]
