"""@tool: schemas from signatures, validated arguments, sync and async functions."""

from __future__ import annotations

import threading

import pydantic
import pytest

from agentguild import Tool, ToolError, ToolRegistry, tool
from agentguild.tools.builtin import CalculationError, calculator, evaluate


@tool
def add(a: float, b: float = 1.0) -> float:
    """Add two numbers.

    Args:
        a: the first number
        b: the second number
    """
    return a + b


def test_schema_comes_from_signature_and_docstring() -> None:
    assert add.spec.name == "add"
    assert add.spec.description == "Add two numbers."
    assert add.spec.parameters["properties"] == {
        "a": {"type": "number", "description": "the first number"},
        "b": {"type": "number", "description": "the second number", "default": 1.0},
    }
    assert add.spec.parameters["required"] == ["a"]
    assert add.spec.parameters["additionalProperties"] is False


async def test_invoke_validates_json_arguments_and_returns_text() -> None:
    assert await add.invoke('{"a": 2, "b": 3}') == "5.0"
    assert await add.invoke({"a": 2}) == "3.0"


async def test_invalid_arguments_raise_validation_error() -> None:
    with pytest.raises(pydantic.ValidationError):
        await add.invoke('{"a": "two"}')
    with pytest.raises(pydantic.ValidationError):
        await add.invoke('{"a": 1, "c": 2}')


async def test_sync_tools_run_off_the_event_loop_thread() -> None:
    @tool
    def where() -> str:
        """Name the thread."""
        return threading.current_thread().name

    assert await where.invoke("{}") != threading.current_thread().name


async def test_structured_results_are_serialised_as_json() -> None:
    class Point(pydantic.BaseModel):
        x: int
        y: int

    @tool
    async def point() -> Point:
        """A point."""
        return Point(x=1, y=2)

    @tool
    async def mapping() -> dict[str, list[int]]:
        """A mapping."""
        return {"a": [1, 2]}

    assert await point.invoke("{}") == '{"x":1,"y":2}'
    assert await mapping.invoke("") == '{"a":[1,2]}'


def test_decorator_options_override_name_and_description() -> None:
    @tool(name="sum_two", description="Sums.", timeout_s=2, idempotent=True)
    def whatever(a: int, b: int) -> int:
        return a + b

    assert (whatever.name, whatever.spec.description) == ("sum_two", "Sums.")
    assert whatever.timeout_s == 2
    assert whatever.idempotent


def test_functions_without_type_hints_are_rejected_with_a_clear_error() -> None:
    def untyped(a):  # type: ignore[no-untyped-def]
        return a

    with pytest.raises(ToolError, match="parameter 'a' needs a type hint"):
        Tool(untyped)


def test_registry_rejects_duplicate_names_and_wraps_plain_functions() -> None:
    def shout(text: str) -> str:
        """Upper-case text."""
        return text.upper()

    registry = ToolRegistry([add, shout])
    assert registry.names == ["add", "shout"]
    assert "shout" in registry
    with pytest.raises(ToolError, match="already registered"):
        registry.register(add)


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2 * (3 + 4)", 14),
        ("sqrt(16) + 2**10", 1028),
        ("7 / 2", 3.5),
        ("(-3) ^ 2", 9),
        ("pi", 3.141592653589793),
    ],
)
def test_calculator_evaluates_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    "expression", ["__import__('os')", "1/0", "2 ** 100000", "open('x')", "a + 1", "1 +"]
)
def test_calculator_refuses_anything_but_arithmetic(expression: str) -> None:
    with pytest.raises(CalculationError):
        evaluate(expression)


async def test_calculator_tool_returns_text() -> None:
    assert await calculator.invoke('{"expression": "6*7"}') == "42"
