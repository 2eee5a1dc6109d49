"""Model clients and the `ChatModel` protocol they share."""

from .base import (
    ChatChunk,
    ChatModel,
    ChatRequest,
    ChatResponse,
    ChunkAccumulator,
    ToolCallDelta,
    ToolChoice,
)
from .local import LocalModel
from .openai_compat import OpenAICompatModel
from .scripted import ScriptedModel, ScriptExhaustedError, tool_call

__all__ = [
    "ChatChunk",
    "ChatModel",
    "ChatRequest",
    "ChatResponse",
    "ChunkAccumulator",
    "LocalModel",
    "OpenAICompatModel",
    "ScriptExhaustedError",
    "ScriptedModel",
    "ToolCallDelta",
    "ToolChoice",
    "tool_call",
]
