"""Tools: `@tool` functions, the registry that holds them, the executor that runs them."""

from .base import Tool, ToolRegistry, as_tool, result_text, tool
from .executor import ToolExecutor

__all__ = ["Tool", "ToolExecutor", "ToolRegistry", "as_tool", "result_text", "tool"]
