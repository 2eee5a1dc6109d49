"""The load generator of `server_load.py`, run as its own process (so its CPU is its own).

C workers share one aiohttp session (connector limit C) and POST a pre-serialised chat
request to `<url>/v1/chat/completions` until the end of the run:

- closed loop (no `--rate`): each worker sends its next request as soon as the last one
  is answered — C requests always in flight; measures the most the server can serve;
- open loop (`--rate R`): request i is due at start + i/R and is sent by the first free
  worker; its latency counts from when it was due, so a server (or client) falling behind
  shows as latency, not as politely fewer requests (no coordinated omission).

Only requests that complete inside the measured window (after `--warmup` seconds, for
`--duration` seconds) are counted. Responses are checked by status only, except one in
`--validate-every`, which is parsed and checked against the prompt (the fake LLM echoes
it). CPU of the client and of the processes named by `--pids` (with their children) is
sampled at the window's edges. Prints one JSON object on its last stdout line.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import resource
import statistics
import sys
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson
import psutil

_PROMPT = "Say something short about load testing."


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="HTTP load generator for server_load.py")
    parser.add_argument("--url", required=True, help="server root, e.g. http://127.0.0.1:8000")
    parser.add_argument("--key", default="", help="bearer credential (an ag_... API key)")
    parser.add_argument("--c", type=int, default=1000, help="connections and workers")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--rate", type=float, default=None, help="open loop: requests/s")
    parser.add_argument("--body", choices=("same", "distinct"), default="same")
    parser.add_argument("--expect", choices=("echo", "bare"), default="echo")
    parser.add_argument("--validate-every", type=int, default=50)
    parser.add_argument("--drain", type=float, default=10.0, help="max seconds to finish")
    parser.add_argument("--pids", default="", help="name=pid,... to sample CPU of")
    parser.add_argument("--tag", default="", help="makes distinct prompts unique to this run")
    return parser.parse_args()


class Bodies:
    """Pre-serialised request bodies: one fixed body, or one distinct prompt per request."""

    def __init__(self, kind: str, tag: str = "") -> None:
        self.kind = kind
        self.tag = tag
        request = {
            "model": "assistant",
            "messages": [{"role": "user", "content": "\x00"}],
            "temperature": 0,
        }
        head, tail = orjson.dumps(request).split(b"\\u0000")
        self._head, self._tail = head, tail
        self.same = head + _PROMPT.encode() + tail

    def body(self, i: int) -> bytes:
        if self.kind == "same":
            return self.same
        return self._head + self.prompt(i).encode() + self._tail

    def prompt(self, i: int) -> str:
        return _PROMPT if self.kind == "same" else f"{_PROMPT} #{self.tag}-{i}"


def valid(raw: bytes, expect: str, prompt: str) -> bool:
    try:
        data = orjson.loads(raw)
        if expect == "bare":
            return bool(data["content"] == prompt)
        return bool(data["choices"][0]["message"]["content"] == prompt)
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return False


class CpuProbe:
    """CPU seconds of this process, of named processes (with children), and of the machine."""

    def __init__(self, spec: str) -> None:
        self.groups: dict[str, list[psutil.Process]] = {}
        for item in filter(None, spec.split(",")):
            name, _, pid = item.partition("=")
            self.groups.setdefault(name, []).append(psutil.Process(int(pid)))

    def sample(self) -> dict[str, float]:
        taken = {"client": time.process_time()}
        for name, roots in self.groups.items():
            taken[name] = sum(_tree_cpu(root) for root in roots)
        times = psutil.cpu_times()
        taken["machine"] = times.user + times.system + getattr(times, "softirq", 0.0)
        taken["machine"] += getattr(times, "irq", 0.0) + getattr(times, "nice", 0.0)
        return taken


def _tree_cpu(root: psutil.Process) -> float:
    total = 0.0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for process in processes:
        try:
            cpu = process.cpu_times()
        except psutil.Error:
            continue
        total += cpu.user + cpu.system
    return total


def percentile_ms(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0] * 1000, 2)
    return round(
        statistics.quantiles(values, n=1000, method="inclusive")[int(pct * 10) - 1] * 1000, 2
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    bodies = Bodies(args.body, args.tag)
    endpoint = f"{args.url}/v1/chat/completions"
    headers = {"Content-Type": "application/json"}
    if args.key:
        headers["Authorization"] = f"Bearer {args.key}"
    connector = aiohttp.TCPConnector(limit=args.c, keepalive_timeout=30)
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=60),
        skip_auto_headers=("User-Agent",),
    )
    probe = CpuProbe(args.pids)
    loop = asyncio.get_running_loop()
    clock = time.perf_counter  # uvloop's loop.time() ticks in whole milliseconds
    start = clock()
    t0 = start + args.warmup
    t1 = t0 + args.duration
    rate = args.rate
    slots = itertools.count()
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    exceptions: Counter[str] = Counter()
    first_error: list[str] = []
    checked = invalid = in_flight = 0
    samples: dict[str, dict[str, float]] = {}

    def edge(name: str) -> None:
        samples[name] = probe.sample()

    loop.call_later(t0 - clock(), edge, "t0")
    loop.call_later(t1 - clock(), edge, "t1")

    async def worker() -> None:
        nonlocal checked, invalid, in_flight
        while True:
            i = next(slots)
            if rate is not None:
                due = start + i / rate
                if due >= t1:
                    return
                delay = due - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                begin = due
            else:
                begin = clock()
                if begin >= t1:
                    return
            in_flight += 1
            try:
                async with session.post(endpoint, data=bodies.body(i), headers=headers) as response:
                    status = response.status
                    raw = await response.read()
            except Exception as exc:  # every failure is counted; the first one is reported
                in_flight -= 1
                end = clock()
                if t0 <= end <= t1:
                    exceptions[type(exc).__name__] += 1
                    if not first_error:
                        first_error.append(f"{type(exc).__name__}: {exc}")
                continue
            in_flight -= 1
            end = clock()
            if not t0 <= end <= t1:
                continue
            statuses[str(status)] += 1
            if status != 200:
                if not first_error:
                    first_error.append(f"HTTP {status}: {raw[:300]!r}")
                continue
            latencies.append(end - begin)
            if len(latencies) % args.validate_every == 1:
                checked += 1
                if not valid(raw, args.expect, bodies.prompt(i)):
                    invalid += 1
                    if not first_error:
                        first_error.append(f"unexpected answer: {raw[:300]!r}")

    tasks = [asyncio.create_task(worker()) for _ in range(args.c)]
    _, pending = await asyncio.wait(tasks, timeout=(t1 - clock()) + args.drain)
    unfinished = in_flight
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await session.close()

    wall = args.duration
    ok = len(latencies)
    errors = sum(statuses.values()) - statuses.get("200", 0) + sum(exceptions.values()) + invalid
    total = sum(statuses.values()) + sum(exceptions.values())
    result: dict[str, Any] = {
        "mode": "closed" if rate is None else "open",
        "offered_rps": rate,
        "c": args.c,
        "body": args.body,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "requests": total,
        "rps": round(ok / wall, 1),
        "p50_ms": percentile_ms(latencies, 50),
        "p95_ms": percentile_ms(latencies, 95),
        "p99_ms": percentile_ms(latencies, 99),
        "max_ms": round(max(latencies) * 1000, 2) if latencies else None,
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
        "error_rate": round(errors / total, 6) if total else None,
        "errors": errors,
        "status_counts": dict(sorted(statuses.items())),
        "exceptions": dict(exceptions),
        "validated": checked,
        "invalid": invalid,
        "first_error": first_error[0] if first_error else None,
        "unfinished": unfinished,
    }
    if "t0" in samples and "t1" in samples:
        used = {k: samples["t1"][k] - samples["t0"][k] for k in samples["t0"]}
        # CPU as a percentage of one core over the window (the machine's can reach 100 * cores).
        used["other"] = used["machine"] - sum(v for k, v in used.items() if k != "machine")
        result["cpu_pct"] = {k: round(v / wall * 100, 1) for k, v in used.items()}
        result["client_cpu_ms_per_req"] = round(used["client"] / max(ok, 1) * 1000, 3)
        for name in probe.groups:
            result[f"{name}_cpu_ms_per_req"] = round(used[name] / max(ok, 1) * 1000, 3)
    return result


def main() -> None:
    args = parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.c + 256
    if soft < wanted and (hard == resource.RLIM_INFINITY or hard >= wanted):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(args))
    else:
        result = uvloop.run(run(args))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
