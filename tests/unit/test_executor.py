"""ToolExecutor: concurrency, limits, timeouts, failures as results, dependency order."""

from __future__ import annotations

import asyncio

from agentguild import ToolCall, ToolRegistry, tool
from agentguild.tools import ToolExecutor


def call(name: str, arguments: str = "{}", id: str | None = None) -> ToolCall:
    return ToolCall(id or f"id-{name}", name, arguments)


async def test_calls_of_one_turn_run_concurrently() -> None:
    # Given two tools that can only finish if both are running at the same time
    first_started, second_started = asyncio.Event(), asyncio.Event()

    @tool
    async def first() -> str:
        """Waits for second."""
        first_started.set()
        await second_started.wait()
        return "first done"

    @tool
    async def second() -> str:
        """Waits for first."""
        second_started.set()
        await first_started.wait()
        return "second done"

    executor = ToolExecutor(ToolRegistry([first, second]), timeout_s=5)
    # When both are called in one turn
    results = await executor.execute([call("first"), call("second")])
    # Then both complete (sequential execution would time out), in call order
    assert [r.content for r in results] == ["first done", "second done"]
    assert not any(r.is_error for r in results)


async def test_concurrency_limit_bounds_calls_in_flight() -> None:
    in_flight = 0
    peak = 0

    @tool
    async def work(n: int) -> int:
        """Work."""
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(3):
            await asyncio.sleep(0)
        in_flight -= 1
        return n

    executor = ToolExecutor(ToolRegistry([work]), max_concurrency=2)
    calls = [call("work", f'{{"n": {i}}}', id=str(i)) for i in range(6)]
    results = await executor.execute(calls)
    assert [r.content for r in results] == [str(i) for i in range(6)]
    assert peak == 2


async def test_timeout_becomes_an_error_result() -> None:
    never = asyncio.Event()

    @tool(timeout_s=0.01)
    async def stuck() -> str:
        """Never returns."""
        await never.wait()
        return "unreachable"

    (result,) = await ToolExecutor(ToolRegistry([stuck])).execute([call("stuck")])
    assert result.is_error
    assert "timed out after 0.01s" in result.content


async def test_exceptions_invalid_arguments_and_unknown_tools_become_error_results() -> None:
    @tool
    def boom(x: int) -> int:
        """Fails."""
        raise RuntimeError(f"bad {x}")

    executor = ToolExecutor(ToolRegistry([boom]))
    results = await executor.execute(
        [
            call("boom", '{"x": 1}', "a"),
            call("boom", '{"x": "y"}', "b"),
            call("nope", "{}", "c"),
            call("boom", "not json", "d"),
        ]
    )
    assert all(r.is_error for r in results)
    assert results[0].content == "Error: boom failed: RuntimeError: bad 1"
    assert "invalid arguments for boom: x:" in results[1].content
    assert "unknown tool 'nope'; available tools: boom" in results[2].content
    assert "invalid arguments for boom" in results[3].content
    assert [r.call.id for r in results] == ["a", "b", "c", "d"]


async def test_placeholder_arguments_wait_for_and_receive_the_referenced_result() -> None:
    order: list[str] = []

    @tool
    async def search(query: str) -> str:
        """Search."""
        await asyncio.sleep(0)
        order.append("search")
        return f'top hit for "{query}"'

    @tool
    async def summarise(text: str) -> str:
        """Summarise."""
        order.append("summarise")
        return f"summary of {text}"

    executor = ToolExecutor(ToolRegistry([search, summarise]))
    summary, hit = await executor.execute(
        [call("summarise", '{"text": "{{search}}"}'), call("search", '{"query": "cats"}')]
    )
    assert order == ["search", "summarise"]
    assert summary.content == 'summary of top hit for "cats"'
    assert summary.call.arguments == '{"text": "{{search}}"}'
    assert hit.content == 'top hit for "cats"'


async def test_circular_placeholders_are_reported_not_deadlocked() -> None:
    @tool
    async def ping(x: str) -> str:
        """Ping."""
        return x

    @tool
    async def pong(x: str) -> str:
        """Pong."""
        return x

    executor = ToolExecutor(ToolRegistry([ping, pong]))
    results = await executor.execute(
        [call("ping", '{"x": "{{pong}}"}'), call("pong", '{"x": "{{ping}}"}')]
    )
    assert all(r.is_error and "circular" in r.content for r in results)
