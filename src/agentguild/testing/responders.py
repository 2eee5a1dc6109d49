"""Built-in default responders: how a `FakeLLMServer` answers when nothing is scripted."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeAlias

import orjson

from .replies import FakeToolCall, JSONObject, Reply, Responder

Mode: TypeAlias = Literal["echo", "tool-loop"]
MODES: tuple[Mode, ...] = ("echo", "tool-loop")
DEFAULT_TOOL_ARGUMENTS: Mapping[str, Any] = {"a": 2, "b": 3}


def message_text(message: Mapping[str, Any]) -> str:
    """The text of an OpenAI message object: its string content or its text parts joined."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(
        part.get("text", "") for part in content if isinstance(part, dict) and "text" in part
    )


def _last_user_text(messages: list[JSONObject]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def echo_responder(request: JSONObject) -> Reply:
    """Answer with the text of the last user message."""
    return Reply(_last_user_text(request.get("messages") or []))


def tool_loop_responder(
    arguments: Mapping[str, Any] | None = None,
) -> Callable[[JSONObject], Reply]:
    """A responder driving one tool round trip, as an agent's function-calling loop needs.

    - last message from the user and the request offers tools: call the first offered tool
      with `arguments` (default `{"a": 2, "b": 3}`);
    - last message is a tool result: answer `"The result is <tool output>."`;
    - otherwise: echo the last user message.
    """
    raw_arguments = orjson.dumps(
        dict(DEFAULT_TOOL_ARGUMENTS if arguments is None else arguments)
    ).decode()

    def respond(request: JSONObject) -> Reply:
        messages: list[JSONObject] = request.get("messages") or []
        last = messages[-1] if messages else {}
        role = last.get("role")
        tools = request.get("tools")
        if role == "tool":
            return Reply(f"The result is {message_text(last)}.")
        if role == "user" and tools:
            name = tools[0].get("function", {}).get("name", "tool")
            return Reply(tool_calls=(FakeToolCall(name, raw_arguments),))
        return Reply(_last_user_text(messages))

    return respond


def responder_for_mode(mode: Mode, *, tool_arguments: Mapping[str, Any] | None = None) -> Responder:
    """The built-in responder called `mode` ('echo' or 'tool-loop')."""
    if mode == "echo":
        return echo_responder
    if mode == "tool-loop":
        return tool_loop_responder(tool_arguments)
    raise ValueError(f"unknown fake server mode {mode!r}; known modes: {', '.join(MODES)}")
