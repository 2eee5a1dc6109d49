"""Run a `FakeLLMServer` in a separate process (for benchmarks and cross-process tests)."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson

from .responders import Mode
from .server import FakeServerError

READY_PREFIX = "agentguild fake LLM server ready at "
"""The process prints this, then its base URL, on one stdout line once it accepts requests."""


@contextlib.contextmanager
def start_fake_server_process(
    *,
    mode: Mode = "echo",
    latency: float = 0.0,
    tool_arguments: Mapping[str, Any] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 30.0,
    extra_args: Sequence[str] = (),
) -> Iterator[str]:
    """Start `python -m agentguild.testing` and yield its base URL once it is ready.

    Readiness is the process's "ready" line on stdout (no polling, no sleeps). The process
    is terminated (then killed, if it lingers) when the block exits.

    ```python
    with start_fake_server_process(mode="tool-loop", latency=0.05) as base_url:
        ...
    ```
    """
    command = [
        sys.executable,
        "-m",
        "agentguild.testing",
        "--host",
        host,
        "--port",
        str(port),
        "--latency",
        repr(latency),
        "--mode",
        mode,
    ]
    if tool_arguments is not None:
        command += ["--tool-args", orjson.dumps(dict(tool_arguments)).decode()]
    command += list(extra_args)
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        yield _await_ready(process, startup_timeout)
    finally:
        _stop(process)


def _await_ready(process: subprocess.Popen[bytes], timeout: float) -> str:
    """Read the child's stdout up to its ready line; return the URL on it."""
    if process.stdout is None:
        raise FakeServerError("fake LLM server process was started without a stdout pipe")
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    received = b""
    while b"\n" not in received:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FakeServerError(
                f"fake LLM server process did not report ready within {timeout:g}s; "
                f"it printed {received!r}"
            )
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        data = os.read(fd, 4096)
        if not data:
            code = process.wait()
            raise FakeServerError(
                f"fake LLM server process exited with code {code} before it was ready "
                f"(see its stderr above); it printed {received!r}"
            )
        received += data
    line = received.split(b"\n", 1)[0].decode().strip()
    if not line.startswith(READY_PREFIX):
        raise FakeServerError(f"unexpected first line from fake LLM server process: {line!r}")
    return line.removeprefix(READY_PREFIX)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()
