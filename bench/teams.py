"""Planned-task benchmark: do independent subtasks really run in parallel?

One run = a `PlannedTeam` task: the planner's call, then the subtasks (one LLM call each,
on a specialist), then the synthesiser's call, all against the fake OpenAI-compatible
server (in-process, 50 ms latency per call). The planner is told how many subtasks to
return and whether they form one layer (independent) or two (the second layer depends on
the first).

For each shape the run is timed with the scheduler's parallelism (`max_concurrency` = the
number of subtasks) and sequentially (`max_concurrency=1`), and compared with the critical
path: (1 planner + longest dependency chain + 1 synthesiser) x latency. The headline: a task
with 8 independent subtasks should take about 3 x 50 ms, not 10 x 50 ms.

Usage: python bench/teams.py [--quick] [--reps N] [--latency S] [--out bench/results/teams.json]
The last stdout line is one JSON object with every figure; a PNG is written next to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from agentguild import Assistant
from agentguild.llm import OpenAICompatModel
from agentguild.tasks import PlannedTeam, Planner, Task
from agentguild.testing import FakeLLMServer, Reply

HERE = Path(__file__).resolve().parent


def respond(request: dict[str, Any]) -> Reply:
    """Planner: a plan of the asked shape; synthesiser: a merge; specialists: a result."""
    messages = request["messages"]
    system = messages[0].get("content") or ""
    if system.startswith("You are a planner"):
        match = re.search(r"width=(\d+) layers=(\d+)", messages[-1]["content"])
        width, layers = (int(match.group(1)), int(match.group(2))) if match else (1, 1)
        return Reply(json.dumps({"subtasks": _plan(width, layers)}))
    if system.startswith("You write the final answer"):
        return Reply("merged")
    return Reply("result")


def _plan(width: int, layers: int) -> list[dict[str, Any]]:
    per_layer = max(width // layers, 1)
    subtasks = []
    for i in range(width):
        layer = min(i // per_layer, layers - 1)
        deps = [f"s{j}" for j in range(width) if min(j // per_layer, layers - 1) == layer - 1]
        subtasks.append({"id": f"s{i}", "title": f"part {i}", "category": "research",
                         "depends_on": deps})  # fmt: skip
    return subtasks


def team(model: OpenAICompatModel, concurrency: int) -> PlannedTeam:
    return PlannedTeam(
        Planner(model, max_subtasks=64, response_format="text"),
        {"research": Assistant(model, name="specialist")},
        synthesiser=model,
        max_concurrency=concurrency,
    )


async def timed_run(
    model: OpenAICompatModel, width: int, layers: int, concurrency: int
) -> dict[str, Any]:
    task = Task(f"bench task width={width} layers={layers}")
    started = time.perf_counter()
    result = await team(model, concurrency).result(task=task)
    wall = time.perf_counter() - started
    if result.output != "merged" or any(s.status != "completed" for s in task.subtasks):
        raise RuntimeError(f"the run failed: {result.stop_reason} {task.error}")
    return {"wall_s": wall, "max_parallel": _max_parallel(task), "task": task}


def _max_parallel(task: Task) -> int:
    running = peak = 0
    for mark in task.timeline:
        running += 1 if mark.kind == "start" else -1
        peak = max(peak, running)
    return peak


async def measure(
    model: OpenAICompatModel, width: int, layers: int, reps: int, latency: float
) -> dict[str, Any]:
    parallel = [await timed_run(model, width, layers, width) for _ in range(reps)]
    sequential = [await timed_run(model, width, layers, 1) for _ in range(reps)]
    par = statistics.median(r["wall_s"] for r in parallel)
    seq = statistics.median(r["wall_s"] for r in sequential)
    critical = (2 + layers) * latency
    gantt = parallel[len(parallel) // 2]["task"]
    origin = min(s.started_at or 0.0 for s in gantt.subtasks)
    return {
        "width": width,
        "layers": layers,
        "llm_calls": 2 + width,
        "critical_path_s": round(critical, 4),
        "sequential_ideal_s": round((2 + width) * latency, 4),
        "parallel_wall_s": round(par, 4),
        "parallel_wall_min_s": round(min(r["wall_s"] for r in parallel), 4),
        "sequential_wall_s": round(seq, 4),
        "ratio_to_critical_path": round(par / critical, 3),
        "ratio_to_sequential": round(par / seq, 3),
        "speedup": round(seq / par, 2),
        "max_parallel_subtasks": max(r["max_parallel"] for r in parallel),
        "gantt": [
            [s.id, round((s.started_at or 0) - origin, 4), round((s.finished_at or 0) - origin, 4)]
            for s in gantt.subtasks
        ],
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    shapes = [(8, 1), (8, 2)] if args.quick else [(2, 1), (4, 1), (8, 1), (16, 1), (8, 2)]
    async with FakeLLMServer(
        responder=respond, latency=args.latency, record_requests=False
    ) as server:
        model = OpenAICompatModel("fake-model", base_url=server.base_url, api_key="bench")
        try:
            await timed_run(model, 2, 1, 2)  # warm-up: open the pooled connections
            results = [
                await measure(model, w, layers, args.reps, args.latency) for w, layers in shapes
            ]
        finally:
            await model.aclose()
    headline = next(r for r in results if (r["width"], r["layers"]) == (8, 1))
    return {
        "benchmark": "teams.planned_task",
        "quick": args.quick,
        "latency_s": args.latency,
        "reps": args.reps,
        "headline": {k: v for k, v in headline.items() if k != "gantt"},
        "shapes": results,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = report["shapes"]
    labels = [f"{s['width']}x{s['layers']}" for s in shapes]
    fig, (bars, gantt) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = range(len(shapes))
    for offset, key, label in (
        (-0.27, "critical_path_s", "critical path"),
        (0.0, "parallel_wall_s", "parallel (measured)"),
        (0.27, "sequential_wall_s", "sequential (measured)"),
    ):
        bars.bar([i + offset for i in x], [s[key] * 1000 for s in shapes], 0.27, label=label)
    bars.set_xticks(list(x), labels)
    bars.set_xlabel("subtasks x dependency layers")
    bars.set_ylabel("wall time per task (ms)")
    bars.set_title(f"Planned task, fake LLM at {report['latency_s'] * 1000:g} ms/call")
    top = max(s["sequential_wall_s"] for s in shapes) * 1000
    bars.set_ylim(0, top * 1.3)
    bars.legend(loc="upper left")
    headline = next(s for s in shapes if (s["width"], s["layers"]) == (8, 1))
    for row, (name, start, end) in enumerate(headline["gantt"]):
        gantt.barh(row, (end - start) * 1000, left=start * 1000)
        gantt.text(end * 1000, row, f" {name}", va="center", fontsize=8)
    gantt.set_xlabel("ms since the first subtask started")
    gantt.set_yticks([])
    gantt.set_title("8 independent subtasks: when each ran")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 subtasks in 1 and 2 layers, < 60 s")
    parser.add_argument("--reps", type=int, default=None, help="runs per variant (median taken)")
    parser.add_argument("--latency", type=float, default=0.05, help="fake LLM latency per call")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "teams.json")
    args = parser.parse_args()
    if args.reps is None:
        args.reps = 7 if args.quick else 15
    report = asyncio.run(bench(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot(report, args.out.with_suffix(".png"))
    header = ("shape", "critical", "parallel", "sequential", "x crit", "x seq")
    print("{:>8} {:>9} {:>9} {:>11} {:>7} {:>6}".format(*header))
    for s in report["shapes"]:
        print(
            f"{s['width']:>5}x{s['layers']:<2} {s['critical_path_s'] * 1000:>7.0f}ms "
            f"{s['parallel_wall_s'] * 1000:>7.0f}ms {s['sequential_wall_s'] * 1000:>9.0f}ms "
            f"{s['ratio_to_critical_path']:>7.2f} {s['ratio_to_sequential']:>6.2f}"
        )
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}", file=sys.stderr)
    print(json.dumps(report["headline"]))


if __name__ == "__main__":
    main()
