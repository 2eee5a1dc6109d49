"""Prometheus metrics of the task queue: depth and workers per queue, jobs by status."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from .queue import QUEUES, TaskQueue


async def queue_metrics(queue: TaskQueue) -> bytes:
    """The queue's current metrics in the Prometheus text format (gathered on each scrape):

    - `agentguild_queue_depth{queue}`: jobs waiting (queued, or waiting for a retry);
    - `agentguild_queue_workers{queue}`: workers consuming the queue (in-process: workers
      of this process; Celery: worker processes answering a ping);
    - `agentguild_queue_dead_letters`: dead letters not re-driven yet.
    """
    registry = CollectorRegistry(auto_describe=True)
    depth = Gauge(
        "agentguild_queue_depth", "Jobs waiting, per queue.", ["queue"], registry=registry
    )
    workers = Gauge(
        "agentguild_queue_workers", "Workers consuming each queue.", ["queue"], registry=registry
    )
    dead = Gauge(
        "agentguild_queue_dead_letters", "Dead letters not re-driven yet.", registry=registry
    )
    waiting = await queue.depth()
    consuming = await queue.workers()
    for name in QUEUES:
        depth.labels(name).set(waiting.get(name, 0))
        workers.labels(name).set(consuming.get(name, 0))
    dead.set(await queue.dead_count())
    return bytes(generate_latest(registry))
