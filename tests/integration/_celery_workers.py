"""`agentguild worker` subprocesses for integration tests."""

from __future__ import annotations

import os
import queue as stdlib_queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agentguild._platform_settings import QueueSettings

WORKER_READY_S = 60.0


class Worker:
    """An `agentguild worker` subprocess; `ready` once Celery says so."""

    def __init__(
        self,
        settings: QueueSettings,
        database_url: str,
        cwd: Path,
        *,
        jobs: str = "agentguild.testing.queue_jobs:registry",
        extra_env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        env = {
            **os.environ,
            "AGENTGUILD_DATABASE__URL": database_url,
            "AGENTGUILD_QUEUE__BACKEND": "celery",
            "AGENTGUILD_QUEUE__BROKER_URL": str(settings.broker_url),
            "AGENTGUILD_QUEUE__QUEUE_PREFIX": settings.queue_prefix,
            "AGENTGUILD_QUEUE__MAX_RETRIES": str(settings.max_retries),
            "AGENTGUILD_QUEUE__RETRY_BACKOFF_S": str(settings.retry_backoff_s),
            "AGENTGUILD_QUEUE__RETRY_BACKOFF_MAX_S": str(settings.retry_backoff_max_s),
            "AGENTGUILD_QUEUE__LEASE_S": str(settings.lease_s),
            "AGENTGUILD_QUEUE__VISIBILITY_TIMEOUT_S": str(settings.visibility_timeout_s),
            **(extra_env or {}),
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agentguild",
                "worker",
                "--jobs",
                jobs,
                "--concurrency",
                str(settings.concurrency),
                "--log-level",
                "info",
                *extra_args,
            ],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: stdlib_queue.Queue[str] = stdlib_queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.put(line)
        self._lines.put("")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + WORKER_READY_S
        while time.monotonic() < deadline:
            line = self._lines.get(timeout=max(0.1, deadline - time.monotonic()))
            self.output.append(line)
            if line == "":
                pytest.fail("worker exited before it was ready:\n" + "".join(self.output))
            if " ready." in line:
                return
        pytest.fail("worker not ready in time:\n" + "".join(self.output))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
