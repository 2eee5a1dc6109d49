"""`agentguild worker`: a Celery worker executing queued jobs (background runs, tasks)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from ..config import Settings
    from ..runtime.queue import JobRegistry
    from ..store.db import Database

DEFAULT_JOBS = "agentguild.runtime._run_jobs:platform_jobs"


def worker(
    queues: Annotated[
        str, typer.Option(help="Comma-separated queues to consume (default: all).")
    ] = "default,research,code,analysis",
    concurrency: Annotated[
        int | None, typer.Option(help="Jobs run at once (default: queue.concurrency).")
    ] = None,
    jobs: Annotated[
        str,
        typer.Option(
            help="The jobs, as `module:attribute`: a JobRegistry, or an async function "
            "(settings, database) -> JobRegistry. Default: background runs."
        ),
    ] = DEFAULT_JOBS,
    pool: Annotated[str, typer.Option(help="Celery pool: threads, prefork or solo.")] = "threads",
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    config: Annotated[Path | None, typer.Option(help="Config file.", dir_okay=False)] = None,
) -> None:
    """Run queued jobs from the broker in `queue.broker_url` until stopped.

    SIGTERM/SIGINT stop it gracefully: running jobs are released and re-delivered to
    another worker; a killed worker's jobs are re-delivered by the broker.
    """
    from celery import signals  # type: ignore[import-untyped]

    from ..config import load_settings
    from ..runtime.celery_app import WorkerRuntime, broker_queue, create_celery_app
    from ..runtime.queue import QUEUES

    settings = load_settings(config)
    names = [name.strip() for name in queues.split(",") if name.strip()]
    unknown = [name for name in names if name not in QUEUES]
    if unknown:
        raise typer.BadParameter(f"unknown queues {unknown}; queues: {', '.join(QUEUES)}")
    runtime = WorkerRuntime(settings.database, settings.queue, _load_jobs(jobs, settings))
    app = create_celery_app(settings.queue, runtime)

    def release_running(**_: object) -> None:
        runtime.shutdown()

    signals.worker_shutting_down.connect(release_running, weak=False)
    app.worker_main(
        [
            "worker",
            "-Q",
            ",".join(broker_queue(settings.queue, name) for name in names),
            "-c",
            str(concurrency or settings.queue.concurrency),
            "-P",
            pool,
            "-n",
            f"agentguild-{os.getpid()}@%h",
            "--loglevel",
            log_level.upper(),
            "--without-gossip",
            "--without-mingle",
        ]
    )


def _load_jobs(
    spec: str, settings: Settings
) -> JobRegistry | Callable[[Database], Coroutine[Any, Any, JobRegistry]]:
    from ..runtime.queue import JobRegistry

    module_name, _, attribute = spec.partition(":")
    jobs = getattr(importlib.import_module(module_name), attribute or "registry", None)
    if isinstance(jobs, JobRegistry):
        return jobs
    if not callable(jobs):
        raise typer.BadParameter(
            f"{spec!r} is neither a JobRegistry nor a function building one "
            "(expected `module:attribute`)"
        )
    build = jobs

    async def setup(db: Database) -> JobRegistry:
        registry = await build(settings, db)
        if not isinstance(registry, JobRegistry):
            raise typer.BadParameter(f"{spec!r} did not return a JobRegistry")
        return registry

    return setup
