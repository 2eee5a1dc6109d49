"""Bench: what routing + retry + circuit breaker cost per call, next to the bare client.

Compares `OpenAICompatModel` alone with the stack
`Router([Deployment(RetryingModel(BreakerModel(OpenAICompatModel)), breaker=...)])`:

- in process: both around a model that answers instantly, so the difference is exactly
  the wrappers' own cost (complete and stream, microseconds per call);
- over HTTP: both against a `FakeLLMServer` subprocess with zero latency, so the
  overhead is put next to the cheapest real call (one keep-alive HTTP round trip).

Rounds alternate bare and stacked runs and the median round is reported, so drift on a
shared machine hits both alike. Prints a summary, then one JSON object on the last stdout
line, and writes it to bench/results/gateway_routing.json.

    python bench/gateway_routing.py --quick     # < 60 s
    python bench/gateway_routing.py             # more calls and rounds
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from agentguild.llm.base import ChatChunk, ChatModel, ChatRequest, ChatResponse
from agentguild.llm.openai_compat import OpenAICompatModel
from agentguild.llm.resilience import BreakerModel, CircuitBreaker, RetryBudget, RetryingModel
from agentguild.llm.router import Deployment, Router
from agentguild.testing import start_fake_server_process
from agentguild.types import Message, Usage

RESULTS = Path(__file__).parent / "results" / "gateway_routing.json"
STACK = "Router([Deployment(RetryingModel(BreakerModel(model)), breaker=CircuitBreaker())])"
REQUEST = ChatRequest([Message.user("How fast is the gateway?")], max_tokens=16)


class InstantModel:
    """Answers at once, without awaiting anything: the wrappers' cost is all that remains."""

    _response = ChatResponse(Message.assistant("instant"), Usage(5, 1), model="instant")
    _chunks = (ChatChunk(text="in"), ChatChunk(text="stant"), ChatChunk(finish_reason="stop"))

    @property
    def name(self) -> str:
        return "instant"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return self._response

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        for chunk in self._chunks:
            yield chunk


def gateway_stack(model: ChatModel) -> Router:
    """The stack under test: one deployment, retried, behind a breaker, in a router."""
    guarded = BreakerModel(model, CircuitBreaker(name=f"{model.name}-inner"))
    retried = RetryingModel(guarded, budget=RetryBudget())
    return Router(
        [Deployment(retried, breaker=CircuitBreaker(name=model.name))],
        name="bench-model",
    )


async def complete_calls(model: ChatModel, calls: int) -> float:
    """Seconds per call for `calls` sequential complete() calls."""
    start = time.perf_counter()
    for _ in range(calls):
        await model.complete(REQUEST)
    return (time.perf_counter() - start) / calls


async def stream_calls(model: ChatModel, calls: int) -> float:
    """Seconds per call for `calls` sequential streams, each read to its end."""
    start = time.perf_counter()
    for _ in range(calls):
        async for _chunk in model.stream(REQUEST):
            pass
    return (time.perf_counter() - start) / calls


async def compare(
    bare: ChatModel, stack: ChatModel, run: Runner, calls: int, rounds: int
) -> dict[str, Any]:
    """Paired rounds of bare and stacked calls (alternating which goes first).

    Reports the median µs per call of each, and the overhead as the median of the
    per-round differences: pairing cancels most of the drift of a shared machine.
    """
    await run(bare, max(10, calls))  # warm up pools, caches, code paths
    await run(stack, max(10, calls))
    bare_rounds, stack_rounds, differences = [], [], []
    gc.collect()
    for index in range(rounds):
        if index % 2 == 0:
            bare_us = await run(bare, calls) * 1e6
            stack_us = await run(stack, calls) * 1e6
        else:
            stack_us = await run(stack, calls) * 1e6
            bare_us = await run(bare, calls) * 1e6
        bare_rounds.append(bare_us)
        stack_rounds.append(stack_us)
        differences.append(stack_us - bare_us)
    bare_median = statistics.median(bare_rounds)
    stack_median = statistics.median(stack_rounds)
    return {
        "bare_us": round(bare_median, 2),
        "stack_us": round(stack_median, 2),
        "overhead_us": round(statistics.median(differences), 2),
        "ratio": round(stack_median / bare_median, 4),
        "calls_per_round": calls,
        "rounds": rounds,
    }


Runner = Callable[[ChatModel, int], Awaitable[float]]


async def in_process(calls: int, rounds: int) -> dict[str, Any]:
    bare, stack = InstantModel(), gateway_stack(InstantModel())
    return {
        "complete": await compare(bare, stack, complete_calls, calls, rounds),
        "stream": await compare(bare, stack, stream_calls, calls, rounds),
    }


async def over_http(base_url: str, calls: int, rounds: int) -> dict[str, Any]:
    bare = OpenAICompatModel("fake-model", base_url=base_url, api_key="bench", name="bare")
    inner = OpenAICompatModel("fake-model", base_url=base_url, api_key="bench", name="stacked")
    try:
        return {
            "complete": await compare(bare, gateway_stack(inner), complete_calls, calls, rounds),
            "stream": await compare(bare, gateway_stack(inner), stream_calls, calls, rounds),
        }
    finally:
        await bare.aclose()
        await inner.aclose()


def summary(label: str, result: dict[str, Any]) -> str:
    return (
        f"{label:<22} bare {result['bare_us']:>9.2f} µs   stack {result['stack_us']:>9.2f} µs   "
        f"overhead {result['overhead_us']:>8.2f} µs   ratio {result['ratio']:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (under a minute)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args(argv)
    if args.quick:
        memory_calls, memory_rounds, http_calls, http_rounds = 2_000, 30, 25, 60
    else:
        memory_calls, memory_rounds, http_calls, http_rounds = 5_000, 60, 50, 200

    started = time.perf_counter()
    memory = asyncio.run(in_process(memory_calls, memory_rounds))
    with start_fake_server_process(latency=0.0) as base_url:
        http = asyncio.run(over_http(base_url, http_calls, http_rounds))
    result = {
        "bench": "gateway_routing",
        "quick": args.quick,
        "stack": STACK,
        "in_process": memory,
        "http_fake_server": http,
        "overhead_us_per_call": memory["complete"]["overhead_us"],
        "overhead_share_of_http_call": round(
            memory["complete"]["overhead_us"] / http["complete"]["bare_us"], 5
        ),
        "http_ratio": http["complete"]["ratio"],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "duration_s": round(time.perf_counter() - started, 1),
    }
    for label, part in (
        ("in-process complete", memory["complete"]),
        ("in-process stream", memory["stream"]),
        ("http complete", http["complete"]),
        ("http stream", http["stream"]),
    ):
        print(summary(label, part))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
