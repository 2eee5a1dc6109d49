"""Messages, tool calls, usage and the events an agent run yields.

Messages follow the OpenAI chat format, so they convert to and from its JSON without loss
(`Message.to_openai`, `Message.from_openai`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

Role: TypeAlias = Literal["system", "user", "assistant", "tool"]
JSONObject: TypeAlias = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TextPart:
    """A run of text inside a multi-part message."""

    text: str

    def to_openai(self) -> JSONObject:
        return {"type": "text", "text": self.text}


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image inside a multi-part message, by URL (http(s) or a `data:` URL)."""

    url: str
    detail: Literal["auto", "low", "high"] = "auto"

    def to_openai(self) -> JSONObject:
        return {"type": "image_url", "image_url": {"url": self.url, "detail": self.detail}}


ContentPart: TypeAlias = TextPart | ImagePart


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A model's request to call one tool."""

    id: str
    name: str
    arguments: str
    """Raw JSON text as the model produced it; parse with the tool's schema."""

    def to_openai(self) -> JSONObject:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message in the OpenAI format."""

    role: Role
    content: str | tuple[ContentPart, ...] | None = None
    """Text, a sequence of parts, or None (an assistant turn that only calls tools)."""
    tool_calls: tuple[ToolCall, ...] = ()
    """Tool calls requested by an assistant message."""
    tool_call_id: str | None = None
    """For a tool message: the id of the call it answers."""
    name: str | None = None
    """The speaker's name (an agent in a team, a tool for a tool message)."""

    @classmethod
    def system(cls, text: str) -> Message:
        return cls("system", text)

    @classmethod
    def user(cls, content: str | Sequence[ContentPart], *, name: str | None = None) -> Message:
        return cls("user", content if isinstance(content, str) else tuple(content), name=name)

    @classmethod
    def assistant(
        cls,
        text: str | None = None,
        *,
        tool_calls: Iterable[ToolCall] = (),
        name: str | None = None,
    ) -> Message:
        return cls("assistant", text, tuple(tool_calls), name=name)

    @classmethod
    def tool(cls, tool_call_id: str, content: str, *, name: str | None = None) -> Message:
        return cls("tool", content, tool_call_id=tool_call_id, name=name)

    @property
    def text(self) -> str:
        """The message's text: the content, or its text parts joined; '' if none."""
        content = self.content
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        return "".join(part.text for part in content if isinstance(part, TextPart))

    def to_openai(self) -> JSONObject:
        """This message as an OpenAI chat-completions message object."""
        content = self.content
        out: JSONObject = {
            "role": self.role,
            "content": content
            if content is None or isinstance(content, str)
            else [part.to_openai() for part in content],
        }
        if self.tool_calls:
            out["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None and self.role != "tool":
            out["name"] = self.name
        return out

    @classmethod
    def from_openai(cls, data: Mapping[str, Any]) -> Message:
        """Parse an OpenAI chat message object (as sent to or received from the API)."""
        raw_content = data.get("content")
        content: str | tuple[ContentPart, ...] | None
        if raw_content is None or isinstance(raw_content, str):
            content = raw_content
        else:
            content = tuple(_part_from_openai(part) for part in raw_content)
        raw_calls = data.get("tool_calls") or ()
        return cls(
            role=data["role"],
            content=content,
            tool_calls=tuple(
                ToolCall(c["id"], c["function"]["name"], c["function"].get("arguments") or "{}")
                for c in raw_calls
            ),
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
        )


def _part_from_openai(part: Mapping[str, Any]) -> ContentPart:
    if part.get("type") == "image_url":
        image = part["image_url"]
        return ImagePart(image["url"], image.get("detail", "auto"))
    return TextPart(part.get("text", ""))


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What a model is told about a tool: its name, purpose and JSON-schema parameters."""

    name: str
    description: str
    parameters: JSONObject

    def to_openai(self) -> JSONObject:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one or more model calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The outcome of one tool call, as reported back to the model."""

    call: ToolCall
    content: str
    """The text the model sees: the tool's output, or a description of the failure."""
    is_error: bool = False
    duration_s: float = 0.0

    def to_message(self) -> Message:
        return Message.tool(self.call.id, self.content, name=self.call.name)


# ---- events: one run is one stream of these ------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of assistant text as it streams in."""

    text: str
    agent: str


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """A complete message added to the conversation (assistant turns and tool results)."""

    message: Message
    agent: str


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    """The agent is about to execute a tool call."""

    call: ToolCall
    agent: str


@dataclass(frozen=True, slots=True)
class ToolResultEvent:
    """A tool call finished (successfully or not)."""

    result: ToolResult
    agent: str


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """Tokens spent by one model call."""

    usage: Usage
    model: str
    agent: str


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """The run failed; `error_type` is the exception's class name."""

    error_type: str
    message: str
    agent: str


StopReason: TypeAlias = Literal["completed", "max_turns", "error", "cancelled"]


@dataclass(frozen=True, slots=True)
class RunResult:
    """The final event of a run: what it added to the conversation and what it cost."""

    agent: str
    messages: tuple[Message, ...]
    """The messages the run produced, in order (assistant turns and tool results)."""
    usage: Usage = field(default_factory=Usage)
    stop_reason: StopReason = "completed"
    turns: int = 0
    """How many model calls the run made."""

    @property
    def output(self) -> str:
        """The text of the last assistant message ('' if there is none)."""
        for message in reversed(self.messages):
            if message.role == "assistant" and message.content:
                return message.text
        return ""


# ---- team and task events ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpeakerSelected:
    """A team chose who speaks next; several names speak in parallel."""

    speakers: tuple[str, ...]
    agent: str
    """The team."""
    reason: str = ""
    """How they were chosen: 'round robin', 'selector', 'mention', 'candidates', 'handoff',
    'fallback', 'resumed', ..."""


@dataclass(frozen=True, slots=True)
class HandoffEvent:
    """A member of a swarm handed the conversation to another member (or to the user)."""

    source: str
    target: str
    agent: str
    """The team."""
    message: str = ""
    """What the member said about the handoff, if anything."""


@dataclass(frozen=True, slots=True)
class TerminationEvent:
    """A team's termination condition fired; the run ends after this event."""

    reason: str
    agent: str
    """The team."""


TaskStatus: TypeAlias = Literal["pending", "running", "completed", "failed", "cancelled"]
SubtaskStatus: TypeAlias = Literal[
    "pending", "running", "completed", "failed", "skipped", "cancelled"
]


@dataclass(frozen=True, slots=True)
class TaskUpdate:
    """A planned task changed status (or was planned: `detail` then summarises the plan)."""

    task_id: str
    status: TaskStatus
    agent: str
    """The planned team running the task."""
    detail: str = ""
    """The plan summary, the final answer, or the error."""


@dataclass(frozen=True, slots=True)
class SubtaskUpdate:
    """A subtask of a planned task changed status."""

    task_id: str
    subtask_id: str
    status: SubtaskStatus
    agent: str
    """The planned team running the task."""
    title: str = ""
    category: str = ""
    specialist: str = ""
    """The agent that works (or worked) on the subtask."""
    attempt: int = 0
    """1 for the first try, 2 for the first retry, ...; 0 before it ran."""
    detail: str = ""
    """The result (completed) or the error (failed, skipped, a retried attempt)."""


Event: TypeAlias = (
    TextDelta
    | MessageEvent
    | ToolCallEvent
    | ToolResultEvent
    | UsageEvent
    | ErrorEvent
    | RunResult
    | SpeakerSelected
    | HandoffEvent
    | TerminationEvent
    | TaskUpdate
    | SubtaskUpdate
)
"""Everything an agent run yields; the last event of every run is a `RunResult`."""
