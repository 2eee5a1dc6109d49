"""`python -m agentguild.testing`: run a fake OpenAI-compatible LLM server until stopped.

Prints one line, `agentguild fake LLM server ready at <base URL>`, once it accepts requests.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence

import orjson

from .process import READY_PREFIX
from .responders import MODES, Mode
from .server import FakeLLMServer


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agentguild.testing",
        description="Run a fake OpenAI-compatible LLM server (for tests and benchmarks).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds before each answer (default 0)"
    )
    parser.add_argument("--mode", choices=MODES, default="echo", help="default responder")
    parser.add_argument(
        "--tool-args",
        default=None,
        help='JSON arguments of the tool call in tool-loop mode (default {"a": 2, "b": 3})',
    )
    parser.add_argument("--model", action="append", help="model id to list (repeatable)")
    parser.add_argument("--backlog", type=int, default=4096)
    parser.add_argument("--record", action="store_true", help="keep every request body in memory")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    mode: Mode = args.mode
    tool_arguments = None if args.tool_args is None else orjson.loads(args.tool_args)
    server = FakeLLMServer(
        mode=mode,
        latency=args.latency,
        tool_arguments=tool_arguments,
        models=args.model or ("fake-model",),
        host=args.host,
        port=args.port,
        record_requests=args.record,
        backlog=args.backlog,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        print(f"{READY_PREFIX}{server.base_url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `python -m agentguild.testing`."""
    asyncio.run(_serve(_parse_args(argv)))


if __name__ == "__main__":
    main()
