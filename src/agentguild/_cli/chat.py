"""The interactive chat loop behind `agentguild chat`."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from ..errors import AgentguildError
from ..types import Message
from .render import EventRenderer
from .session import answer, close_model, load_model

if TYPE_CHECKING:
    from ..agents import Assistant

LineReader = Callable[[], str]
"""Returns the next line the user typed; raises EOFError at the end of input and
KeyboardInterrupt on Ctrl-C."""

HELP = """\
commands:
  /help    show this help
  /reset   forget the conversation so far
  /exit    quit (Ctrl-D does too)
Ctrl-C stops the answer being written; the conversation goes on."""


class ChatSession:
    """A conversation with one agent: reads lines, streams answers, remembers the history.

    One event loop serves the whole session, so the model's connection pool stays warm
    between turns. Ctrl-C while an answer is streaming cancels that answer only (the turn
    is dropped from the history); Ctrl-D or end of input ends the session.
    """

    def __init__(
        self,
        agent: Assistant,
        console: Console,
        read_line: LineReader,
        *,
        interactive: bool,
        status: Console | None = None,
    ) -> None:
        self.agent = agent
        self.console = console
        self._status = status or console
        self.history: list[Message] = []
        self._read_line = read_line
        self._interactive = interactive

    def run(self) -> None:
        """Chat until the user exits or the input ends."""
        if self._interactive:
            tools = ", ".join(self.agent.tools.names) or "none"
            self.console.print(
                f"[bold]agentguild chat[/] · model [cyan]{self.agent.model.name}[/] · "
                f"tools: {tools}\n[dim]/help for commands, Ctrl-D to quit[/]",
                highlight=False,
            )
        with asyncio.Runner() as runner:
            try:
                runner.run(load_model(self.agent.model, self._status))
                while self._turn(runner):
                    pass
            finally:
                runner.run(close_model(self.agent.model))

    def _turn(self, runner: asyncio.Runner) -> bool:
        """Read and handle one line; False when the session is over."""
        try:
            line = self._read_line().strip()
        except EOFError:
            if self._interactive:
                self.console.print()
            return False
        except KeyboardInterrupt:
            self.console.print("\n[dim](Ctrl-D or /exit to quit)[/]", highlight=False)
            return True
        if not line:
            return True
        if line.startswith("/"):
            return self._command(line)
        self._ask(runner, line)
        return True

    def _command(self, line: str) -> bool:
        command = line.split()[0].lower()
        if command in ("/exit", "/quit"):
            return False
        if command == "/reset":
            self.history.clear()
            self.console.print("[dim](conversation cleared)[/]", highlight=False)
        elif command == "/help":
            self.console.print(HELP, markup=False, highlight=False)
        else:
            self.console.print(
                Text(f"unknown command {command}; /help lists the commands", style="yellow")
            )
        return True

    def _ask(self, runner: asyncio.Runner, text: str) -> None:
        question = Message.user(text)
        prefix = Text("assistant› ", style="bold magenta") if self._interactive else None
        renderer = EventRenderer(self.console, prefix=prefix)
        try:
            result = runner.run(answer(self.agent, [*self.history, question], renderer))
        except KeyboardInterrupt:
            self.console.print("[dim](cancelled)[/]", highlight=False)
            return
        except AgentguildError as exc:
            if not renderer.errors:  # errors the agent reported as events are shown already
                self.console.print(Text(f"error: {exc}", style="bold red"), soft_wrap=True)
            return
        self.history += [question, *result.messages]
        if self._interactive:
            self.console.print()


def stdin_reader(console: Console) -> tuple[LineReader, bool]:
    """A line reader for standard input, and whether the session is interactive.

    On a terminal it prompts (with line editing where `readline` is available); otherwise
    it reads lines silently, so `echo hi | agentguild chat` works.
    """
    if sys.stdin.isatty():
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (enables line editing and history for input())

        def prompt() -> str:
            return console.input("[bold green]you›[/] ")

        return prompt, True

    def read() -> str:
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line

    return read, False
