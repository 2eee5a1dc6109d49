"""Gateway benchmark: what each model-stack wrapper costs per call, and what it guarantees.

Every figure is measured in one process, against baselines measured in the same run:

  direct_scripted     ScriptedModel.complete: the in-process floor
  direct_http         OpenAICompatModel -> in-process fake server (a real HTTP round trip)
  direct_scripted_stream  ScriptedModel.stream, consumed to the end
  cache_l1_hit        CachedModel, answer in L1
  cache_l1_hit_stream CachedModel.stream, answer in L1 (chunk replay)
  cache_miss          CachedModel, a new request every call: the cost added to a miss
  cache_redis_hit     CachedModel, L1 emptied before each call: answer from Redis
  cache_disk_hit      CachedModel, L1 emptied before each call: answer from the SQLite file
  metered             MeteredModel around ScriptedModel
  single_flight_1000  1000 identical concurrent requests -> upstream calls (must be 1)
  redis_outage        load run; a private redis-server is killed, then restarted:
                      failed requests (must be 0), and Redis used again afterwards

Scenarios are plain async functions in `SCENARIOS`; add a row by appending one (a row
naming a `baseline` gets `overhead_us` and `ratio` against that row).

Usage: python bench/gateway.py [--quick] [--scenarios a,b] [--out PATH] [--redis-url URL]
The last stdout line is one JSON object with every figure; --out (default
bench/results/gateway.json) gets the same object, and a PNG chart next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from agentguild.llm import ChatRequest, OpenAICompatModel, ScriptedModel
from agentguild.llm.cache import CachedModel, DiskStore, RedisStore, ResponseCache
from agentguild.llm.metering import MeteredModel, Price, UsageAggregator
from agentguild.testing import FakeLLMServer
from agentguild.types import Message
from gateway_routing import gateway_stack  # bench/ is on sys.path when run as a script

REQUEST = ChatRequest(
    [Message.system("You are terse."), Message.user("What is the capital of France?")],
    temperature=0.0,
    max_tokens=64,
    tenant_id="bench",
)
ANSWER = "The capital of France is Paris, which is also its largest city."


@dataclass(frozen=True)
class Settings:
    quick: bool
    calls: int
    """Calls per timed repetition of a per-call scenario."""
    repeats: int
    """Timed repetitions; the median is reported."""
    redis_url: str


Row = dict[str, Any]
Scenario = Callable[[Settings], Awaitable[Row]]


async def per_call_us(call: Callable[[], Awaitable[object]], settings: Settings) -> float:
    """Median over `repeats` of the mean wall time of one sequential call, in µs."""
    for _ in range(min(settings.calls, 500)):
        await call()
    samples = []
    for _ in range(settings.repeats):
        started = time.perf_counter_ns()
        for _ in range(settings.calls):
            await call()
        samples.append((time.perf_counter_ns() - started) / settings.calls / 1000)
    return round(statistics.median(samples), 2)


def scripted() -> ScriptedModel:
    return ScriptedModel([ANSWER], cycle=True, name="bench")


# ---- per-call rows -------------------------------------------------------------------------


async def direct_scripted(settings: Settings) -> Row:
    model = scripted()
    return {"us_per_call": await per_call_us(lambda: model.complete(REQUEST), settings)}


async def direct_http(settings: Settings) -> Row:
    async with FakeLLMServer(responder=lambda request: ANSWER, record_requests=False) as server:
        model = OpenAICompatModel("fake-model", base_url=server.base_url)
        fewer = Settings(settings.quick, max(50, settings.calls // 20), settings.repeats, "")
        try:
            us = await per_call_us(lambda: model.complete(REQUEST), fewer)
        finally:
            await model.aclose()
    return {"us_per_call": us, "note": "client + in-process server share the loop"}


async def cache_l1_hit(settings: Settings) -> Row:
    model = CachedModel(scripted(), cache=ResponseCache())
    await model.complete(REQUEST)
    us = await per_call_us(lambda: model.complete(REQUEST), settings)
    return {"us_per_call": us, "baseline": "direct_scripted", "hit_rate": _hit_rate(model)}


async def direct_scripted_stream(settings: Settings) -> Row:
    model = scripted()

    async def consume() -> None:
        async for _ in model.stream(REQUEST):
            pass

    return {"us_per_call": await per_call_us(consume, settings)}


async def cache_l1_hit_stream(settings: Settings) -> Row:
    model = CachedModel(scripted(), cache=ResponseCache())

    async def consume() -> None:
        async for _ in model.stream(REQUEST):
            pass

    await consume()
    us = await per_call_us(consume, settings)
    return {"us_per_call": us, "baseline": "direct_scripted_stream"}


async def routed(settings: Settings) -> Row:
    """Router + retry + breaker around the same model: the resilience layers' own cost."""
    model = gateway_stack(scripted())
    us = await per_call_us(lambda: model.complete(REQUEST), settings)
    return {"us_per_call": us, "baseline": "direct_scripted", "stack": "Router(Retrying(Breaker))"}


async def routed_stream(settings: Settings) -> Row:
    model = gateway_stack(scripted())

    async def consume() -> None:
        async for _ in model.stream(REQUEST):
            pass

    us = await per_call_us(consume, settings)
    return {"us_per_call": us, "baseline": "direct_scripted_stream"}


async def cache_miss(settings: Settings) -> Row:
    """Every call a different request: what the cache adds to a call it cannot answer
    (key, single-flight task, encoding, L1 insert; L1 only)."""
    model = CachedModel(scripted(), cache=ResponseCache())
    count = min(settings.calls, 500) + settings.calls * settings.repeats
    requests = iter([replace(REQUEST, seed=index) for index in range(count)])
    us = await per_call_us(lambda: model.complete(next(requests)), settings)
    return {"us_per_call": us, "baseline": "direct_scripted", "misses": model.cache.stats().misses}


async def _l2_hit(settings: Settings, cache: ResponseCache) -> Row:
    model = CachedModel(scripted(), cache=cache)
    await model.complete(REQUEST)
    await cache.flush()

    async def call() -> None:
        cache.l1.clear()
        await model.complete(REQUEST)

    us = await per_call_us(call, settings)
    stats = cache.stats()
    await cache.aclose()
    if stats.l2_errors or stats.misses != 1:
        return {"error": f"L2 not hit on every call: {stats}"}
    return {"us_per_call": us, "baseline": "direct_scripted", "l2_hits": stats.l2_hits}


async def cache_redis_hit(settings: Settings) -> Row:
    if not await _redis_reachable(settings.redis_url):
        return {"error": f"redis not reachable at {settings.redis_url}"}
    prefix = f"agentguild-bench:{uuid.uuid4().hex}:"
    store = RedisStore(settings.redis_url, prefix=prefix)
    try:
        row = await _l2_hit(settings, ResponseCache(l2=store))
    finally:
        await _delete_prefix(settings.redis_url, prefix)
    return row | {"redis_url": settings.redis_url}


async def cache_disk_hit(settings: Settings) -> Row:
    with TemporaryDirectory() as directory:
        return await _l2_hit(settings, ResponseCache(l2=DiskStore(Path(directory) / "c.db")))


async def metered(settings: Settings) -> Row:
    usage = UsageAggregator()
    model = MeteredModel(scripted(), prices=Price(0.5, 1.5), sink=usage)
    us = await per_call_us(lambda: model.complete(REQUEST), settings)
    return {"us_per_call": us, "baseline": "direct_scripted", "calls_recorded": usage.total().calls}


# ---- guarantees ------------------------------------------------------------------------------


async def single_flight_1000(settings: Settings) -> Row:
    """1000 identical requests at once against the fake server (50 ms latency)."""
    reachable = await _redis_reachable(settings.redis_url)
    prefix = f"agentguild-bench:{uuid.uuid4().hex}:"
    l2 = RedisStore(settings.redis_url, prefix=prefix) if reachable else None
    cache = ResponseCache(l2=l2)
    async with FakeLLMServer(mode="echo", latency=0.05, record_requests=False) as server:
        model = OpenAICompatModel("fake-model", base_url=server.base_url)
        cached = CachedModel(model, cache=cache)
        started = time.perf_counter()
        results = await asyncio.gather(
            *(cached.complete(REQUEST) for _ in range(1000)), return_exceptions=True
        )
        wall_ms = (time.perf_counter() - started) * 1000
        upstream = server.request_count
        await model.aclose()
    await cache.aclose()
    if reachable:
        await _delete_prefix(settings.redis_url, prefix)
    return {
        "requests": 1000,
        "upstream_calls": upstream,
        "errors": sum(isinstance(r, BaseException) for r in results),
        "coalesced": cache.stats().coalesced,
        "wall_ms": round(wall_ms, 1),
        "l2": "redis" if reachable else "none",
    }


async def redis_outage(settings: Settings) -> Row:
    """A timed load run: Redis is killed at 25 % of it and restarted at 50 %."""
    binary = shutil.which("redis-server")
    if binary is None:
        return {"error": "redis-server is not installed"}
    port = _free_port()
    server = await asyncio.to_thread(_start_redis, binary, port)
    url = f"redis://127.0.0.1:{port}/0"
    cache = ResponseCache(l2=RedisStore(url, prefix="bench:"), l2_retry_s=0.2)
    count = itertools.count()
    inner = ScriptedModel([lambda r: f"answer {next(count)}"], cycle=True, delay_s=0.005)
    model = CachedModel(inner, cache=cache)
    duration_s, concurrency = (3.0, 50) if settings.quick else (10.0, 200)
    stop = asyncio.Event()
    indexes = itertools.count()
    done, failed = 0, 0
    events: list[tuple[str, int]] = []

    async def worker() -> None:
        nonlocal done, failed
        while not stop.is_set():
            # Distinct questions: every request goes through L2 (a lookup and a write).
            request = ChatRequest([Message.user(f"question #{next(indexes)}")], seed=1)
            try:
                await model.complete(request)
            except Exception:  # counted: this row exists to show there are none
                failed += 1
            done += 1

    async def chaos() -> None:
        nonlocal server
        await asyncio.sleep(duration_s / 4)
        server.kill()
        server.wait()
        events.append(("killed", done))
        await asyncio.sleep(duration_s / 4)
        server = await asyncio.to_thread(_start_redis, binary, port)
        events.append(("restarted", done))
        await asyncio.sleep(duration_s / 2)
        stop.set()

    started = time.perf_counter()
    await asyncio.gather(chaos(), *(worker() for _ in range(concurrency)))
    wall_s = time.perf_counter() - started
    load = cache.stats()
    written_during_load = await _redis_dbsize(url)  # the restarted Redis started empty
    fresh = ChatRequest([Message.user("after the outage")], seed=1)
    await model.complete(fresh)
    await cache.flush()
    key = model.key_for(fresh)
    written_after = key is not None and await _redis_get(url, "bench:" + key) is not None
    await cache.aclose()
    server.kill()
    server.wait()
    return {
        "requests": done,
        "failed_requests": failed,
        "wall_s": round(wall_s, 2),
        "events": events,
        "l2_outages": load.l2_outages,
        "l2_errors": load.l2_errors,
        "l2_skipped": load.l2_skipped,
        "degraded_at_end_of_load": load.degraded,
        "keys_written_to_restarted_redis_during_load": written_during_load,
        "redis_used_after_restart": written_after,
    }


SCENARIOS: list[tuple[str, Scenario]] = [
    ("direct_scripted", direct_scripted),
    ("direct_http", direct_http),
    ("cache_l1_hit", cache_l1_hit),
    ("direct_scripted_stream", direct_scripted_stream),
    ("cache_l1_hit_stream", cache_l1_hit_stream),
    ("routed", routed),
    ("routed_stream", routed_stream),
    ("cache_miss", cache_miss),
    ("cache_redis_hit", cache_redis_hit),
    ("cache_disk_hit", cache_disk_hit),
    ("metered", metered),
    ("single_flight_1000", single_flight_1000),
    ("redis_outage", redis_outage),
]


# ---- helpers ---------------------------------------------------------------------------------


def _hit_rate(model: CachedModel) -> float:
    return round(model.cache.stats().hit_rate, 4)


async def _redis_reachable(url: str) -> bool:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    client = aioredis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def _redis_get(url: str, key: str) -> bytes | None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        value: bytes | None = await client.get(key)
        return value
    finally:
        await client.aclose()


async def _redis_dbsize(url: str) -> int:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        return int(await client.dbsize())
    finally:
        await client.aclose()


async def _delete_prefix(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(binary: str, port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            binary,
            *("--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--logfile", ""),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "Ready to accept connections" in line:
            process.stdout.close()  # nothing reads it from here on
            return process
    raise RuntimeError(f"redis-server on port {port} did not start")


def _derive(rows: dict[str, Row]) -> None:
    for row in rows.values():
        base = rows.get(str(row.get("baseline", "")), {})
        if "us_per_call" in row and "us_per_call" in base:
            row["overhead_us"] = round(row["us_per_call"] - base["us_per_call"], 2)
            row["ratio"] = round(row["us_per_call"] / base["us_per_call"], 3)
        http = rows.get("direct_http", {})
        if "us_per_call" in row and "us_per_call" in http and row is not http:
            row["fraction_of_http_call"] = round(row["us_per_call"] / http["us_per_call"], 4)


def print_table(rows: dict[str, Row]) -> None:
    print(f"{'scenario':<24} {'µs/call':>10} {'overhead µs':>12} {'ratio':>7}  other")
    for name, row in rows.items():
        if "error" in row:
            print(f"{name:<24} error: {row['error']}")
            continue
        if "us_per_call" in row:
            print(
                f"{name:<24} {row['us_per_call']:>10.2f} {row.get('overhead_us', ''):>12} "
                f"{row.get('ratio', ''):>7}"
            )
        else:
            print(f"{name:<24} {json.dumps(row)}")


def plot(rows: dict[str, Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = {
        n: r["us_per_call"] for n, r in rows.items() if "us_per_call" in r and n != "direct_http"
    }
    fig, axis = plt.subplots(figsize=(8, 4))
    axis.barh(list(timed), list(timed.values()), color="tab:blue")
    axis.invert_yaxis()
    axis.set_xlabel("µs per call (lower is better)")
    http = rows.get("direct_http", {}).get("us_per_call")
    title = "gateway wrappers: cost per call"
    axis.set_title(title + (f" (one HTTP call to the fake server: {http:.0f} µs)" if http else ""))
    for index, value in enumerate(timed.values()):
        axis.text(value, index, f" {value:.1f}", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls: under a minute")
    parser.add_argument("--scenarios", help="comma-separated scenario names (default: all)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/gateway.json"))
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("AGENTGUILD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
    )
    return parser.parse_args()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    calls, repeats = (2000, 5) if args.quick else (20000, 7)
    settings = Settings(args.quick, calls, repeats, args.redis_url)
    wanted = set(args.scenarios.split(",")) if args.scenarios else None
    unknown = (wanted or set()) - {name for name, _ in SCENARIOS}
    if unknown:
        sys.exit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    rows: dict[str, Row] = {}
    for name, scenario in SCENARIOS:
        if wanted is None or name in wanted:
            print(f"running {name}...", file=sys.stderr, flush=True)
            gc.collect()  # no scenario pays for the garbage of the one before
            rows[name] = await scenario(settings)
    _derive(rows)
    return {
        "benchmark": "gateway",
        "quick": args.quick,
        "calls_per_repeat": calls,
        "repeats": repeats,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "scenarios": rows,
    }


def main() -> None:
    args = parse_args()
    report = asyncio.run(run(args))
    print_table(report["scenarios"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(report["scenarios"], args.out.with_suffix(".png"))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
