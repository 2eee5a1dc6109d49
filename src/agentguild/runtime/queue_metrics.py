"""Prometheus metrics of the task queue: depth and workers per queue, jobs by status."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from .queue import QUEUES, TaskQueue


async def queue_metrics(queue: TaskQueue) -> bytes:
    """The queue's current metrics in the Prometheus text format (gathered on each scrape):

    - `agentguild_queue_depth{queue}`: jobs waiting (queued, or waiting for a retry);
    - `agentguild_queue_workers{queue}`: workers consuming the queue (in-process: workers
      of this process; Celery: worker processes answering an `inspect`, counted at most
      15 s ago);
    - `agentguild_queue_dead_letters`: dead letters not re-driven yet;
    - `agentguild_queue_send_failures_total` (Celery): sends the broker refused since this
      process started (their jobs are sent again by the sweeper).
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
    send_failures = getattr(queue, "send_failures", None)
    if isinstance(send_failures, int):
        failed = CounterMetricFamily(
            "agentguild_queue_send_failures",
            "Job sends the broker refused (sent again later by the sweeper).",
            value=send_failures,
        )
        registry.register(_Metrics(failed))
    return bytes(generate_latest(registry))


class _Metrics(Collector):
    """Metrics gathered already (a `Counter` would add a `_created` sample per scrape)."""

    def __init__(self, *metrics: Metric) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics
