"""Background-run jobs for testing workers: the platform's, plus a tool that leaves a trace.

`agentguild worker --jobs agentguild.testing.run_jobs:jobs` runs background runs whose
agents may call `record_execution` (not idempotent), which appends one line per execution
to the file named by `$AGENTGUILD_TEST_TOOL_LOG`: the audit of "ran exactly once".
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from ..config import Settings
from ..runtime._run_jobs import platform_jobs
from ..runtime.agent_factory import builtin_tools
from ..runtime.queue import JobRegistry
from ..store.db import Database
from ..tools.base import tool

TOOL_LOG_ENV = "AGENTGUILD_TEST_TOOL_LOG"


async def record_execution(note: str) -> str:
    """Record that this tool ran (appends `note` to the test's tool log)."""
    path = Path(os.environ[TOOL_LOG_ENV])
    await asyncio.to_thread(_append, path, f"{os.getpid()} {note}\n")
    return f"recorded {note}"


async def jobs(settings: Settings, db: Database) -> JobRegistry:
    """The platform's jobs, with `record_execution` among the tools."""
    tools = {**builtin_tools(), "record_execution": tool(record_execution)}
    return await platform_jobs(settings, db, tools)


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(line)
