"""Agent-loop benchmark: what one tool-calling agent run costs the client, per framework.

One run = user question -> model asks for `add(a, b)` -> the tool runs -> its result goes
back -> model answers (2 LLM calls, 1 tool call), against the fake OpenAI-compatible
server in a separate process (`tool-loop` mode, 50 ms latency per call).

Variants, each measured in its own child process (so peak RSS is per variant):
  openai      the loop by hand on `openai.AsyncOpenAI` (the usual baseline)
  aiohttp     the loop by hand on one `aiohttp.ClientSession` + orjson (the floor)
  agentguild  `Assistant(OpenAICompatModel(...), tools=[add])`, `async for ev in agent.run()`

Usage: python bench/agent_loop.py [--n 1000] [--c 100] [--variants openai,aiohttp]
       [--quick] [--out bench/results/NAME.json] [--plot]
The last stdout line is one JSON object with every figure. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from _common import raise_fd_limit, write_report  # bench/ is on sys.path

VARIANTS = ("openai", "aiohttp", "agentguild")
QUESTION = "What is 2 + 3?"
EXPECTED = "5"
MODEL = "fake-model"
ADD_SPEC = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}


async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@dataclass
class Client:
    run_once: Callable[[], Awaitable[str]]
    """One agent run; returns the final answer's text."""
    close: Callable[[], Awaitable[None]]


# ---- the three clients -----------------------------------------------------------------


async def openai_client(url: str, concurrency: int) -> Client:
    import openai

    try:
        import httpx2 as httpx
    except ImportError:  # openai releases before the httpx2 switch
        import httpx  # type: ignore[no-redef]

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = openai.AsyncOpenAI(
        base_url=url,
        api_key="bench",
        max_retries=0,
        timeout=60.0,
        http_client=openai.DefaultAsyncHttpxClient(limits=limits),
    )

    async def run_once() -> str:
        messages: list[Any] = [{"role": "user", "content": QUESTION}]
        for _ in range(10):
            completion = await client.chat.completions.create(
                model=MODEL, messages=messages, tools=[ADD_SPEC]
            )
            message = completion.choices[0].message
            if not message.tool_calls:
                return message.content or ""
            messages.append(message.model_dump(exclude_none=True))
            for call in message.tool_calls:
                result = await add(**json.loads(call.function.arguments))
                messages.append({"role": "tool", "tool_call_id": call.id, "content": str(result)})
        raise RuntimeError("no final answer after 10 turns")

    return Client(run_once, client.close)


async def aiohttp_client(url: str, concurrency: int) -> Client:
    import aiohttp
    import orjson

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=60.0),
    )
    endpoint = f"{url}/chat/completions"
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}

    async def complete(messages: list[Any]) -> Any:
        body = orjson.dumps({"model": MODEL, "messages": messages, "tools": [ADD_SPEC]})
        async with session.post(endpoint, data=body, headers=headers) as response:
            raw = await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {raw[:200]!r}")
        return orjson.loads(raw)["choices"][0]["message"]

    async def run_once() -> str:
        messages: list[Any] = [{"role": "user", "content": QUESTION}]
        for _ in range(10):
            message = await complete(messages)
            calls = message.get("tool_calls")
            if not calls:
                return str(message.get("content") or "")
            messages.append(message)
            for call in calls:
                result = await add(**orjson.loads(call["function"]["arguments"]))
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": str(result)}
                )
        raise RuntimeError("no final answer after 10 turns")

    return Client(run_once, session.close)


async def agentguild_client(url: str, concurrency: int) -> Client:
    try:
        from agentguild.agents import Assistant
        from agentguild.llm.openai_compat import OpenAICompatModel
        from agentguild.tools import tool
        from agentguild.types import RunResult
    except ImportError as exc:
        raise SystemExit(f"agentguild variant unavailable: {exc}") from exc

    model = OpenAICompatModel(MODEL, base_url=url, api_key="bench", max_connections=concurrency)
    agent = Assistant(model, tools=[tool(add)])

    async def run_once() -> str:
        result = None
        async for event in agent.run(QUESTION):
            result = event
        if not isinstance(result, RunResult):
            raise RuntimeError(f"run ended without a RunResult: {result!r}")
        return result.output

    return Client(run_once, model.aclose)


CLIENTS = {"openai": openai_client, "aiohttp": aiohttp_client, "agentguild": agentguild_client}


# ---- child: measure one variant --------------------------------------------------------


@dataclass
class Phase:
    latencies: list[float]
    errors: int
    first_error: str | None


async def drive(client: Client, n: int, concurrency: int) -> Phase:
    """Make `n` runs with `concurrency` runs in flight at a time."""
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    started = 0

    async def worker() -> None:
        nonlocal started, errors, first_error
        while started < n:
            started += 1
            begin = time.perf_counter()
            try:
                answer = await client.run_once()
                if EXPECTED not in answer:
                    raise RuntimeError(f"wrong final answer: {answer!r}")
            except Exception as exc:  # every failure is counted and the first one reported
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"
                continue
            latencies.append(time.perf_counter() - begin)

    await asyncio.gather(*(worker() for _ in range(min(n, concurrency))))
    return Phase(latencies, errors, first_error)


def percentile_ms(values: list[float], pct: int) -> float | None:
    if len(values) < 2:
        return round(values[0] * 1000, 2) if values else None
    return round(statistics.quantiles(values, n=100, method="inclusive")[pct - 1] * 1000, 2)


async def measure(variant: str, url: str, n: int, concurrency: int, warmup: int) -> dict[str, Any]:
    client = await CLIENTS[variant](url, concurrency)
    try:
        await drive(client, warmup, concurrency)
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        phase = await drive(client, n, concurrency)
        wall = time.perf_counter() - wall_start
        cpu = time.process_time() - cpu_start
    finally:
        await client.close()
    return {
        "runs": n,
        "runs_per_s": round(len(phase.latencies) / wall, 1),
        "cpu_s_per_run": round(cpu / n, 6),
        "cpu_ms_per_run": round(cpu / n * 1000, 3),
        "p50_ms": percentile_ms(phase.latencies, 50),
        "p95_ms": percentile_ms(phase.latencies, 95),
        "p99_ms": percentile_ms(phase.latencies, 99),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "errors": phase.errors,
        "first_error": phase.first_error,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
    }


# ---- parent: server, children, report ---------------------------------------------------


def run_child(variant: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    server = next(p for p in psutil.Process().children() if "agentguild.testing" in p.cmdline())
    server_cpu_before = sum(server.cpu_times()[:2])
    command = [sys.executable, __file__, "--child", variant, "--url", url]
    command += ["--n", str(args.n), "--c", str(args.c), "--warmup", str(args.warmup)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=max(600, args.n))
    server_cpu = sum(server.cpu_times()[:2]) - server_cpu_before
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"{variant} child exited with code {done.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    result["server_cpu_ms_per_run"] = round(server_cpu / (args.n + args.warmup) * 1000, 3)
    return result


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = {k: v for k, v in report["variants"].items() if "error" not in v}
    names = list(measured)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    cpu = left.bar(names, [measured[k]["cpu_ms_per_run"] for k in names], color="tab:orange")
    left.bar_label(cpu, fmt="%.2f")
    left.set_title("client CPU per run (ms, lower is better)")
    rate = right.bar(names, [measured[k]["runs_per_s"] for k in names], color="tab:blue")
    right.bar_label(rate, fmt="%.0f")
    right.set_title("runs/s (higher is better)")
    fig.suptitle(f"agent loop, N={report['n']} C={report['c']}, {report['latency_ms']} ms LLM")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(report: dict[str, Any]) -> None:
    print(f"agent loop: N={report['n']} C={report['c']} latency={report['latency_ms']}ms")
    print(
        f"{'variant':<11} {'runs/s':>8} {'cpu ms/run':>10} {'p50':>8} {'p95':>8} "
        f"{'p99':>8} {'rss MB':>7} {'errors':>6}"
    )
    for name, r in report["variants"].items():
        if "error" in r:
            print(f"{name:<11} {r['error']}")
            continue
        print(
            f"{name:<11} {r['runs_per_s']:>8} {r['cpu_ms_per_run']:>10} {r['p50_ms']:>8} "
            f"{r['p95_ms']:>8} {r['p99_ms']:>8} {r['peak_rss_mb']:>7} {r['errors']:>6}"
        )


def versions() -> dict[str, str]:
    found = {}
    for package in ("agentguild", "openai", "aiohttp", "orjson"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "missing"
    return found


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="measured runs per variant")
    parser.add_argument("--c", type=int, default=100, help="runs in flight at a time")
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="unmeasured runs first, at full concurrency (default: C, so every pooled "
        "connection is open before measuring)",
    )
    parser.add_argument("--latency", type=float, default=0.05, help="fake LLM latency (s)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--quick", action="store_true", help="small N: done in < 60 s")
    parser.add_argument("--out", type=Path, help="write the JSON report there")
    parser.add_argument("--plot", action="store_true", help="write a PNG next to --out")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.n, args.c = 500, 100
    if args.warmup is None:
        args.warmup = args.c
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    return args


def main() -> None:
    args = parse_args()
    raise_fd_limit(2 * args.c + 256)
    if args.child:
        result = asyncio.run(measure(args.child, args.url, args.n, args.c, args.warmup))
        print(json.dumps(result))
        return

    from agentguild.testing import start_fake_server_process

    report: dict[str, Any] = {
        "benchmark": "agent_loop",
        "n": args.n,
        "c": args.c,
        "warmup": args.warmup,
        "latency_ms": round(args.latency * 1000),
        "quick": args.quick,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "versions": versions(),
        "variants": {},
    }
    with start_fake_server_process(mode="tool-loop", latency=args.latency) as url:
        for variant in args.variants:
            print(f"running {variant}...", file=sys.stderr, flush=True)
            report["variants"][variant] = run_child(variant, url, args)
    print_table(report)
    write_report(
        report,
        out=args.out,
        plot=plot if args.plot else None,
        default_out=Path("bench/results/agent_loop.json"),
    )


if __name__ == "__main__":
    main()
