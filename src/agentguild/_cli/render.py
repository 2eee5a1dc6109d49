"""Renders a run's events on the terminal: streamed text, tool activity, errors."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from ..types import (
    ErrorEvent,
    Event,
    MessageEvent,
    RunResult,
    TextDelta,
    ToolCallEvent,
    ToolResultEvent,
)

_MAX_SHOWN = 400
"""Characters of a tool's arguments or result shown before truncating."""


class EventRenderer:
    """Writes the answer to `out` as it streams, and tool calls, results and errors to `aux`.

    `out` and `aux` are the same console in the chat REPL; `agentguild run` sends tool
    activity to stderr so that stdout holds only the answer. Text from the model is
    printed literally (never as rich markup).
    """

    def __init__(
        self, out: Console, aux: Console | None = None, *, prefix: Text | None = None
    ) -> None:
        self._out = out
        self._aux = aux or out
        self._prefix = prefix
        """Printed before each assistant message's text (the chat's `assistant›`)."""
        self._prefixed = False
        self._open_line = False
        """Text was streamed and its line is not finished yet."""
        self._streamed = False
        """The message being received was (partly) streamed as text deltas."""
        self.errors: list[ErrorEvent] = []
        """Errors the run reported (and that were shown)."""

    def handle(self, event: Event) -> None:
        """Show one event."""
        if isinstance(event, TextDelta):
            self._write(event.text)
            self._streamed = True
        elif isinstance(event, MessageEvent):
            self._message(event)
        elif isinstance(event, ToolCallEvent):
            self.end_line()
            call = event.call
            self._aux.print(
                Text(f"  ⚙ {call.name}({_clip(call.arguments)})", style="dim cyan"),
                soft_wrap=True,
            )
        elif isinstance(event, ToolResultEvent):
            result = event.result
            style = "red" if result.is_error else "dim"
            self._aux.print(Text(f"  ↳ {_clip(result.content)}", style=style), soft_wrap=True)
        elif isinstance(event, ErrorEvent):
            self.end_line()
            self.errors.append(event)
            self._aux.print(Text(f"error: {event.message}", style="bold red"), soft_wrap=True)
        elif isinstance(event, RunResult) and event.stop_reason != "completed":
            self.end_line()
            self._aux.print(
                Text(f"(stopped: {event.stop_reason} after {event.turns} turns)", style="yellow")
            )

    def end_line(self) -> None:
        """Finish a line of streamed text, if one is open."""
        if self._open_line:
            self._out.print()
            self._open_line = False

    def _message(self, event: MessageEvent) -> None:
        message = event.message
        if message.role == "assistant":
            if not self._streamed and message.text:
                self._write(message.text)
            self.end_line()
        self._streamed = False
        self._prefixed = False

    def _write(self, text: str) -> None:
        if text:
            if self._prefix is not None and not self._prefixed:
                self._out.print(self._prefix, end="")
                self._prefixed = True
            self._out.print(text, end="", markup=False, highlight=False, soft_wrap=True)
            self._open_line = not text.endswith("\n")


def _clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_SHOWN else flat[: _MAX_SHOWN - 1] + "…"
