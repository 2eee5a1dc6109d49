"""ChatML prompts for the local model, and the turn plan (text, or which tools it may call).

The prompt is a sequence of `Segment`s: the template's `<|im_start|>`/`<|im_end|>` markers
are the only segments tokenized as special tokens, so text inside messages (including
text that spells out a marker) can never open or close a turn.

Format taught to the model when tools are offered (the same one llama-cpp-python's
`chatml-function-calling` handler uses): an assistant turn starts with `message:` and then
the answer on the same line, or with `functions.<name>:` and then the arguments as one JSON object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from ..errors import BadRequestError
from ..types import Message, ToolSpec
from .base import ChatRequest

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
"""SmolLM2's own default system prompt, used when the conversation has none."""
MESSAGE_PREFIX = "message: "
CALL_PREFIX = "functions."


def call_header(name: str) -> str:
    """The text that opens a call of tool `name` in an assistant turn."""
    return f"{CALL_PREFIX}{name}:\n"


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of prompt text; `special` marks a template marker (tokenized as one token)."""

    text: str
    special: bool = False


@dataclass(frozen=True, slots=True)
class Prompt:
    """A rendered ChatML prompt, ending with an open assistant turn."""

    segments: tuple[Segment, ...]

    @property
    def text(self) -> str:
        """The prompt as one string (for logs and tests; tokenize `segments` instead)."""
        return "".join(segment.text for segment in self.segments)

    def extend(self, text: str) -> Prompt:
        """This prompt with `text` appended to the open assistant turn."""
        last = self.segments[-1]
        if last.special:
            return Prompt((*self.segments, Segment(text)))
        return Prompt((*self.segments[:-1], Segment(last.text + text)))


@dataclass(frozen=True, slots=True)
class TurnPlan:
    """What the model may do this turn."""

    rendered_tools: tuple[ToolSpec, ...]
    """Tools described in the system prompt (all offered tools unless tool_choice='none')."""
    candidates: tuple[ToolSpec, ...]
    """Tools the model may call now."""
    allow_text: bool
    """Whether answering in text is allowed."""


def plan_turn(request: ChatRequest) -> TurnPlan:
    """Resolve `tools` and `tool_choice` into what the model may do this turn.

    With tool_choice 'auto' (or unset), a tool already called since the last user message
    is not offered again: a 135M model tends to repeat a call forever, and this bounds a
    tool loop to one call per tool per user turn (so a calculator round trip always ends
    in a text answer). 'required' and a named tool are obeyed as asked.
    """
    tools = tuple(request.tools)
    choice = request.tool_choice or "auto"
    if not tools:
        if choice not in ("auto", "none"):
            raise BadRequestError(f"tool_choice={choice!r} but the request offers no tools")
        return TurnPlan((), (), allow_text=True)
    if choice == "none":
        return TurnPlan((), (), allow_text=True)
    if choice == "required":
        return TurnPlan(tools, tools, allow_text=False)
    if choice == "auto":
        called = _called_since_last_user(request.messages)
        return TurnPlan(tools, tuple(t for t in tools if t.name not in called), allow_text=True)
    chosen = tuple(t for t in tools if t.name == choice)
    if not chosen:
        offered = ", ".join(t.name for t in tools)
        raise BadRequestError(
            f"tool_choice names tool {choice!r}, which the request does not offer; "
            f"offered tools: {offered}"
        )
    return TurnPlan(tools, chosen, allow_text=False)


def _called_since_last_user(messages: Sequence[Message]) -> set[str]:
    called: set[str] = set()
    for message in reversed(messages):
        if message.role == "user":
            break
        called.update(call.name for call in message.tool_calls)
    return called


def render_prompt(messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> Prompt:
    """Render a conversation as SmolLM2's ChatML, describing `tools` in the system turn."""
    builder = _Builder()
    rest = list(messages)
    system = DEFAULT_SYSTEM
    if rest and rest[0].role == "system":
        system = rest.pop(0).text
    if tools:
        system = f"{system}\n\n{tool_instructions(tools)}"
    builder.turn("system", system)
    call_names: dict[str, str] = {}
    for message in rest:
        if message.role == "assistant":
            builder.turn("assistant", _assistant_body(message, tools_active=bool(tools)))
            call_names.update((call.id, call.name) for call in message.tool_calls)
        elif message.role == "tool":
            name = message.name or call_names.get(message.tool_call_id or "", "tool")
            builder.turn("tool", f"{CALL_PREFIX}{name} returned:\n{message.text}")
        else:
            builder.turn(message.role, message.text)
    builder.open_turn("assistant")
    return builder.build()


def tool_instructions(tools: Sequence[ToolSpec]) -> str:
    """The system-prompt section that lists `tools` and explains the reply format."""
    lines = ["You have access to the following functions:", ""]
    for spec in tools:
        lines.append(f"{CALL_PREFIX}{spec.name}: {spec.description}".rstrip())
        lines.append(f"arguments (JSON schema): {orjson.dumps(spec.parameters).decode()}")
        lines.append("")
    lines += [
        "To answer with a message, begin your reply with 'message: ' followed by the message.",
        "To call a function, begin your reply with 'functions.<function_name>:' and then "
        "write its arguments as one JSON object on the next line.",
    ]
    return "\n".join(lines)


def _assistant_body(message: Message, *, tools_active: bool) -> str:
    parts: list[str] = []
    if message.text:
        parts.append(f"{MESSAGE_PREFIX}{message.text}" if tools_active else message.text)
    parts.extend(call_header(call.name) + call.arguments for call in message.tool_calls)
    return "\n".join(parts)


class _Builder:
    def __init__(self) -> None:
        self._segments: list[Segment] = []

    def _text(self, text: str) -> None:
        if self._segments and not self._segments[-1].special:
            self._segments[-1] = Segment(self._segments[-1].text + text)
        else:
            self._segments.append(Segment(text))

    def open_turn(self, role: str) -> None:
        self._segments.append(Segment(IM_START, special=True))
        self._text(f"{role}\n")

    def turn(self, role: str, body: str) -> None:
        self.open_turn(role)
        if body:
            self._text(body)
        self._segments.append(Segment(IM_END, special=True))
        self._text("\n")

    def build(self) -> Prompt:
        return Prompt(tuple(self._segments))
