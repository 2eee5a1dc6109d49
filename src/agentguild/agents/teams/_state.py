"""`TeamState`: everything one team run needs to continue, serialisable to JSON."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pydantic

from ...errors import AgentguildError
from ...types import JSONObject, Message, Usage

STATE_VERSION = 1


class TeamStateError(AgentguildError):
    """A team state is malformed, belongs to another team, or is already in use."""


@dataclass(eq=False)
class TeamState:
    """The state of a team's conversation and of its current run.

    A team instance holds only configuration; everything a run changes lives here. Pass
    one to `team.run(messages, state=state)` to keep the conversation across runs, to
    inspect it while the run goes on, or to save it (`to_json()` / `dumps()`) and resume
    the run later, possibly in another process (`TeamState.from_json`). The state only
    changes between turns, so a saved state always describes a turn boundary: resuming
    re-runs the turn that was in progress.

    One state serves one run at a time.
    """

    transcript: list[Message] = field(default_factory=list)
    """The team conversation: the input messages and one message per member turn."""
    team: str = ""
    """The name of the team the state belongs to ('' until its first run)."""
    turns: int = 0
    """Member turns taken over the state's whole life."""
    run_turns: int = 0
    """Member turns taken in the current (or interrupted) run."""
    run_start: int = 0
    """Index in `transcript` of the first message the current run produced."""
    running: bool = False
    """A run started and has not finished: it is in progress, or was interrupted (an
    external stop, an error, a consumer that stopped reading) and can be resumed."""
    next_speakers: list[str] = field(default_factory=list)
    """Who speaks next, when already decided (by a selection or a handoff)."""
    selection_reason: str = ""
    """How `next_speakers` were chosen."""
    termination: JSONObject = field(default_factory=dict)
    """The termination conditions' progress in the current run."""
    usage: Usage = field(default_factory=Usage)
    """Tokens spent by the current run so far."""
    _in_use: bool = field(default=False, init=False, repr=False)

    @contextlib.contextmanager
    def claim(self, team: str) -> Iterator[None]:
        """Hold the state for one run of `team`; raises if another run holds it."""
        if self._in_use:
            raise TeamStateError(
                "this TeamState is already used by a running team run; give each "
                "concurrent run its own state"
            )
        if self.team and self.team != team:
            raise TeamStateError(f"this state belongs to team {self.team!r}, not {team!r}")
        self.team = team
        self._in_use = True
        try:
            yield
        finally:
            self._in_use = False

    @property
    def produced(self) -> tuple[Message, ...]:
        """The messages the members produced in the current (or last) run."""
        return tuple(m for m in self.transcript[self.run_start :] if m.role == "assistant")

    def to_json(self) -> JSONObject:
        """The state as JSON-compatible data (messages in the OpenAI format)."""
        return {
            "version": STATE_VERSION,
            "team": self.team,
            "transcript": [message.to_openai() for message in self.transcript],
            "turns": self.turns,
            "run_turns": self.run_turns,
            "run_start": self.run_start,
            "running": self.running,
            "next_speakers": list(self.next_speakers),
            "selection_reason": self.selection_reason,
            "termination": self.termination,
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
            },
        }

    def dumps(self) -> str:
        """The state as a JSON string."""
        return orjson.dumps(self.to_json()).decode()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TeamState:
        """Rebuild a state from `to_json()` output; raises `TeamStateError` if malformed."""
        try:
            saved = _SavedState.model_validate(data)
        except pydantic.ValidationError as exc:
            raise TeamStateError(f"invalid team state: {exc}") from exc
        if saved.version != STATE_VERSION:
            raise TeamStateError(
                f"team state version {saved.version} is not supported (expected {STATE_VERSION})"
            )
        transcript = [Message.from_openai(message) for message in saved.transcript]
        if not 0 <= saved.run_start <= len(transcript):
            raise TeamStateError("invalid team state: run_start is outside the transcript")
        return cls(
            transcript=transcript,
            team=saved.team,
            turns=saved.turns,
            run_turns=saved.run_turns,
            run_start=saved.run_start,
            running=saved.running,
            next_speakers=list(saved.next_speakers),
            selection_reason=saved.selection_reason,
            termination=saved.termination,
            usage=Usage(saved.usage.prompt_tokens, saved.usage.completion_tokens),
        )

    @classmethod
    def loads(cls, text: str | bytes) -> TeamState:
        """Rebuild a state from `dumps()` output."""
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise TeamStateError(f"team state is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise TeamStateError("team state must be a JSON object")
        return cls.from_json(data)


class _SavedUsage(pydantic.BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _SavedState(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    version: int
    team: str = ""
    transcript: list[dict[str, Any]] = []
    turns: int = pydantic.Field(0, ge=0)
    run_turns: int = pydantic.Field(0, ge=0)
    run_start: int = 0
    running: bool = False
    next_speakers: list[str] = []
    selection_reason: str = ""
    termination: dict[str, Any] = {}
    usage: _SavedUsage = _SavedUsage()
