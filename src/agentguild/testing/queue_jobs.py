"""Job handlers for testing task queues and workers.

Run them with `agentguild worker --jobs agentguild.testing.queue_jobs:registry`:


- `testing.record`: appends one line `<idempotency key>` to the file named by the payload's
  `path` and returns its payload's `value` (the audit of side effects).
- `testing.fail`: always fails with a transient error.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ..runtime.queue import JobContext, JobRegistry

registry = JobRegistry()
"""The testing jobs."""


@registry.handler("testing.record")
async def record(ctx: JobContext) -> Any:
    """Append the job's idempotency key to `payload["path"]`; return `payload["value"]`."""
    path = Path(str(ctx.payload["path"]))
    line = f"{ctx.idempotency_key}\n"
    await asyncio.to_thread(_append, path, line)
    return ctx.payload.get("value")


@registry.handler("testing.fail")
async def fail(ctx: JobContext) -> None:
    """Always fail, as a flaky dependency would."""
    raise ConnectionError(f"attempt {ctx.attempt} failed")


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(line)


@registry.handler("testing.noop")
async def noop(ctx: JobContext) -> None:
    """Do nothing (queue overhead benchmarks)."""
