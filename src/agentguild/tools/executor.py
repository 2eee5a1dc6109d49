"""Runs the tool calls of one assistant turn: concurrently, bounded, time-limited, safely.

Failures never escape: an unknown tool, arguments that don't fit the schema, an exception
or a timeout each become an error `ToolResult` the model can read and react to.

Calls whose arguments mention another call of the same turn as `{{tool_name}}` run after
that call, with the placeholder replaced by its result (dependency-ordered batches).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence

import orjson
import pydantic

from ..types import ToolCall, ToolResult
from .base import ToolRegistry

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_-]+)\s*\}\}")


class ToolExecutor:
    """Executes tool calls against a registry.

    `max_concurrency` bounds how many calls of one turn run at once; `timeout_s` is the
    default per-call limit (a tool's own `timeout_s` wins). A sync tool that overruns its
    limit is reported as timed out at once, though its thread finishes in the background
    (Python threads cannot be killed): give blocking tools their own timeouts too.
    """

    def __init__(
        self,
        registry: ToolRegistry,
        *,
        max_concurrency: int = 8,
        timeout_s: float | None = 60.0,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.registry = registry
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s

    async def execute(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        """Run `calls`; results come back in the order of `calls`."""
        if len(calls) == 1 and "{{" not in calls[0].arguments:
            return [await self._run_one(calls[0])]
        dependencies = _dependencies(calls)
        done: list[asyncio.Future[ToolResult]] = [
            asyncio.get_running_loop().create_future() for _ in calls
        ]
        limit = asyncio.Semaphore(self.max_concurrency)

        async def run(index: int) -> None:
            call = calls[index]
            needs = dependencies[index]
            if needs is None:
                result = _error(call, "circular {{tool}} references between this turn's calls")
            else:
                upstream = [await done[i] for i in needs]
                call = _substitute(call, upstream)
                async with limit:
                    result = await self._run_one(call)
                result = ToolResult(
                    calls[index], result.content, result.is_error, result.duration_s
                )
            done[index].set_result(result)

        async with asyncio.TaskGroup() as group:
            for index in range(len(calls)):
                group.create_task(run(index))
        return [future.result() for future in done]

    async def _run_one(self, call: ToolCall) -> ToolResult:
        tool = self.registry.get(call.name)
        if tool is None:
            available = ", ".join(self.registry.names) or "none"
            return _error(call, f"unknown tool {call.name!r}; available tools: {available}")
        timeout_s = tool.timeout_s if tool.timeout_s is not None else self.timeout_s
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                content = await tool.invoke(call.arguments)
        except pydantic.ValidationError as exc:
            return _error(call, f"invalid arguments for {call.name}: {_summarise(exc)}", started)
        except TimeoutError:
            return _error(call, f"{call.name} timed out after {timeout_s:g}s", started)
        except Exception as exc:  # a tool's failure is information for the model
            return _error(call, f"{call.name} failed: {type(exc).__name__}: {exc}", started)
        return ToolResult(call, content, False, time.perf_counter() - started)


def _error(call: ToolCall, message: str, started: float | None = None) -> ToolResult:
    duration = time.perf_counter() - started if started is not None else 0.0
    return ToolResult(call, f"Error: {message}", True, duration)


def _summarise(exc: pydantic.ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "arguments"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def _dependencies(calls: Sequence[ToolCall]) -> list[list[int] | None]:
    """For each call, the indices of calls it waits for; None where references form a cycle."""
    by_name: dict[str, list[int]] = {}
    for index, call in enumerate(calls):
        by_name.setdefault(call.name, []).append(index)
    direct = [
        sorted(
            {
                other
                for name in _PLACEHOLDER.findall(call.arguments)
                for other in by_name.get(name, ())
                if other != index
            }
        )
        for index, call in enumerate(calls)
    ]
    state: dict[int, str] = {}

    def acyclic(index: int) -> bool:
        if state.get(index) == "visiting":
            return False
        if state.get(index) == "done":
            return True
        state[index] = "visiting"
        ok = all(acyclic(other) for other in direct[index])
        state[index] = "done" if ok else "visiting"
        return ok

    return [needs if acyclic(index) else None for index, needs in enumerate(direct)]


def _substitute(call: ToolCall, upstream: list[ToolResult]) -> ToolCall:
    if not upstream:
        return call
    results = {result.call.name: result.content for result in upstream}

    def replace(match: re.Match[str]) -> str:
        content = results.get(match.group(1))
        if content is None:
            return match.group(0)
        # The placeholder sits inside a JSON string: insert the result JSON-escaped.
        return orjson.dumps(content).decode()[1:-1]

    return ToolCall(call.id, call.name, _PLACEHOLDER.sub(replace, call.arguments))
