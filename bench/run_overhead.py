"""Run overhead benchmark: what the runner adds around an agent, per run (issue 6).

Each run is one user message answered by a scripted model (no network, no tools), so
what is measured is the runner itself: storing the run, its input and its messages,
turn-taking on the conversation (its lock, the tenant's active runs), status changes and
events. Three variants, in this process, on one database:

  agent          the same agent's loop alone (`run_events`), nothing stored: the baseline
  runner         `Runner.start(mode="wait")` on a fresh conversation each time, then wait
  runner-turns   two runs started back to back on a fresh conversation, the second while
                 the first is active (`multitask="enqueue"`): its input is stored aside and
                 added when its turn comes; per run: half the pair's time

Usage: python bench/run_overhead.py [--quick] [--runs 1000] [--database-url URL]
       [--out bench/results/run_overhead.json]
The last stdout line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import delete

from _common import write_report
from agentguild._platform_settings import DatabaseSettings
from agentguild.config import OpenAIModelConfig, Settings
from agentguild.llm.scripted import ScriptedModel
from agentguild.runtime.agent_factory import AgentFactory, run_events
from agentguild.runtime.catalog import AgentCatalog
from agentguild.runtime.runner import Runner
from agentguild.security import Principal, Role
from agentguild.store import Database
from agentguild.store.models import Tenant
from agentguild.types import Message

HERE = Path(__file__).resolve().parent
WARMUP = 30


async def main(runs: int, database_url: str | None) -> dict[str, Any]:
    url = database_url or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/runs.db"
    db = Database(DatabaseSettings(url=url))
    await db.start()
    settings = Settings(
        models={"m": OpenAIModelConfig(provider="openai", model="x")}, default_model="m"
    )
    model = ScriptedModel(["ok"], cycle=True)
    factory = AgentFactory(settings, model_provider=lambda _name: model)
    runner = Runner(db, AgentCatalog(db, factory))
    async with db.system() as system:
        tenant = await system.create_tenant(f"bench-{os.getpid()}-{time.time_ns()}")
    principal = Principal(tenant.id, Role.DEVELOPER)
    async with db.repos(principal) as repos:
        stored = await repos.agents.create("helper", "", {"model": "m"}, None)
        conversations = [
            (await repos.conversations.create(None, stored.id, "c")).id for _ in range(2 * runs)
        ]
    agent = factory.build(stored.id, 1, "helper", {"model": "m"})
    prompt = [Message.user("hi")]

    async def alone(_: int) -> None:
        async for _event in run_events(agent, list(prompt), stream=True):
            pass

    async def through_runner(n: int) -> None:
        handle = await runner.start(principal, conversations[n], prompt, mode="wait")
        await handle.wait()

    async def taking_turns(n: int) -> None:
        conversation = conversations[runs + n]
        first = await runner.start(principal, conversation, prompt, mode="wait")
        second = await runner.start(principal, conversation, prompt, mode="wait")  # queued
        await first.wait()
        await second.wait()

    results = {
        "agent": await _time(alone, runs),
        "runner": await _time(through_runner, runs),
        "runner-turns": await _time(taking_turns, runs, per_call=2),
    }
    base = results["agent"]["ms_p50"]
    for name in ("runner", "runner-turns"):
        results[name]["overhead_ms_p50"] = round(results[name]["ms_p50"] - base, 3)
    await runner.aclose()
    async with db.session() as session:  # leave a shared database as it was
        await session.execute(delete(Tenant).where(Tenant.id == tenant.id))
    await db.close()
    return {
        "benchmark": "run_overhead",
        "database": db.dialect,
        "runs": runs,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "results": results,
    }


async def _time(
    one: Callable[[int], Awaitable[None]], calls: int, *, per_call: int = 1
) -> dict[str, float]:
    """Per-run wall time of `calls` sequential calls of `one` (each `per_call` runs), after
    a warm-up on the first few."""
    for n in range(min(WARMUP, calls)):
        await one(n)
    times = []
    for n in range(min(WARMUP, calls), calls):
        started = time.perf_counter()
        await one(n)
        times.append((time.perf_counter() - started) * 1000 / per_call)
    times.sort()
    return {
        "ms_p50": round(statistics.median(times), 3),
        "ms_p95": round(times[int(len(times) * 0.95) - 1], 3),
        "runs_per_s": round(1000 / statistics.fmean(times), 1),
    }


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 runs: a few seconds")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = _args(sys.argv[1:])
    report = asyncio.run(main(300 if args.quick else args.runs, args.database_url))
    write_report(report, out=args.out, plot=None, default_out=HERE / "results/run_overhead.json")
