"""Task queue benchmark: jobs/s and end-to-end latency, in process vs Celery (issue 6).

Scenarios, each running N no-op jobs (`testing.noop`) to completion:
  inprocess-1, inprocess-2   `InProcessQueue` with 1 and 2 asyncio workers
  celery-<broker>-1, -2      `CeleryQueue` with 1 and 2 `agentguild worker` processes
                             (concurrency 4 each, threads pool) on Redis and/or RabbitMQ

The jobs' state lives in one SQLite file (or `--database-url`, e.g. PostgreSQL) shared by
the workers. Throughput is N / (last finish - first enqueue) with all N enqueued at once;
`latency_ms_*` is each of those jobs' finished_at - created_at (enqueue to completion, as
stored: mostly time spent waiting behind the burst); `idle_latency_ms_*` is enqueue to
completion of 50 jobs sent one at a time to the idle queue (the per-job overhead).

Usage: python bench/queue_throughput.py [--quick] [--jobs 2000] [--brokers redis,rabbitmq]
       [--database-url URL] [--out bench/results/queue.json]
The last stdout line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from agentguild._platform_settings import DatabaseSettings, QueueSettings
from agentguild.runtime.celery_app import CeleryQueue
from agentguild.runtime.queue import InProcessQueue, TaskQueue
from agentguild.store.db import Database
from agentguild.store.queue_models import QueueJob
from agentguild.testing.queue_jobs import registry

BROKERS = {
    "redis": "redis://127.0.0.1:6379/14",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
}


async def _run_jobs(queue: TaskQueue, db: Database, tag: str, jobs: int) -> dict[str, Any]:
    started = time.perf_counter()
    semaphore = asyncio.Semaphore(32)

    async def put(n: int) -> None:
        async with semaphore:
            await queue.enqueue("testing.noop", {}, idempotency_key=f"{tag}:{n}")

    await asyncio.gather(*(put(n) for n in range(jobs)))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        async with db.session() as session:
            rows = (
                await session.execute(
                    select(QueueJob.created_at, QueueJob.finished_at).where(
                        QueueJob.idempotency_key.startswith(f"{tag}:"),
                        QueueJob.status == "completed",
                    )
                )
            ).all()
        if len(rows) == jobs:
            break
        await asyncio.sleep(0.05)  # polling completion
    elapsed = time.perf_counter() - started
    latencies = sorted((done - created).total_seconds() * 1000 for created, done in rows)
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "jobs": jobs,
        "completed": len(rows),
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(len(rows) / elapsed, 1),
        "latency_ms_p50": round(quantiles[49], 1),
        "latency_ms_p95": round(quantiles[94], 1),
    }


async def _idle_latency(queue: TaskQueue, tag: str, jobs: int) -> dict[str, float]:
    """Enqueue-to-completion latency of one job at a time on an idle queue (polled 2 ms)."""
    latencies = []
    for n in range(jobs):
        started = time.perf_counter()
        job_id = await queue.enqueue("testing.noop", {}, idempotency_key=f"{tag}:idle:{n}")
        while True:
            view = await queue.status(job_id)
            if view is not None and view.status == "completed":
                break
            await asyncio.sleep(0.002)  # polling completion
        latencies.append((time.perf_counter() - started) * 1000)
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "idle_latency_ms_p50": round(quantiles[49], 1),
        "idle_latency_ms_p95": round(quantiles[94], 1),
    }


async def _inprocess(db: Database, workers: int, jobs: int) -> dict[str, Any]:
    queue = InProcessQueue(db, registry, QueueSettings(concurrency=workers))
    await queue.start()
    tag = f"bench-{secrets.token_hex(4)}"
    try:
        return {**await _run_jobs(queue, db, tag, jobs), **await _idle_latency(queue, tag, 50)}
    finally:
        await queue.aclose()


def _worker(settings: QueueSettings, database_url: str, cwd: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "AGENTGUILD_DATABASE__URL": database_url,
        "AGENTGUILD_QUEUE__BACKEND": "celery",
        "AGENTGUILD_QUEUE__BROKER_URL": str(settings.broker_url),
        "AGENTGUILD_QUEUE__QUEUE_PREFIX": settings.queue_prefix,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "agentguild", "worker", "--queues", "default",
         "--jobs", "agentguild.testing.queue_jobs:registry", "--concurrency", "4",
         "--log-level", "info"],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    for line in process.stderr:  # Celery logs " ready." once it consumes
        if " ready." in line:
            # Keep draining its log, or the worker blocks on a full pipe.
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return process
    raise RuntimeError(f"worker exited with {process.wait()} before it was ready")


async def _celery(
    db: Database, database_url: str, broker: str, workers: int, jobs: int, cwd: str
) -> dict[str, Any]:
    settings = QueueSettings(
        backend="celery", broker_url=BROKERS[broker], queue_prefix=f"bench-{secrets.token_hex(4)}"
    )
    processes = [
        await asyncio.to_thread(_worker, settings, database_url, cwd) for _ in range(workers)
    ]
    queue = CeleryQueue(db, settings)
    tag = settings.queue_prefix
    try:
        return {**await _run_jobs(queue, db, tag, jobs), **await _idle_latency(queue, tag, 50)}
    finally:
        await queue.aclose()
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        db = Database(DatabaseSettings(url=url))
        await db.start()
        results: dict[str, Any] = {}
        try:
            for workers in (1, 2):
                results[f"inprocess-{workers}"] = await _inprocess(db, workers, args.jobs)
            for broker in args.brokers:
                for workers in (1, 2):
                    results[f"celery-{broker}-{workers}"] = await _celery(
                        db, url, broker, workers, args.jobs, tmp
                    )
        finally:
            await db.close()
    return {
        "benchmark": "queue",
        "quick": args.quick,
        "database": url.split(":", 1)[0] if args.database_url else "sqlite",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "results": results,
    }


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="300 jobs, Redis only: < 60 s")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--brokers", default="redis,rabbitmq")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.brokers = 300, "redis"
    args.brokers = [name for name in args.brokers.split(",") if name]
    return args


if __name__ == "__main__":
    arguments = _parse()
    report = asyncio.run(main(arguments))
    if arguments.out is not None:
        arguments.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
