"""A calculator tool: evaluates arithmetic safely (no `eval`, bounded work)."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from ..base import tool

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "floor": math.floor,
    "ceil": math.ceil,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_MAX_EXPRESSION = 500
_MAX_EXPONENT = 10_000


class CalculationError(ValueError):
    """The expression is not plain arithmetic, or cannot be computed."""


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression (+ - * / // % **, parentheses, math functions)."""
    if len(expression) > _MAX_EXPRESSION:
        raise CalculationError(f"expression longer than {_MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise CalculationError(f"not an arithmetic expression: {expression!r}") from exc
    result = _eval(tree.body)
    if isinstance(result, float) and result.is_integer() and abs(result) < 2**53:
        return int(result)
    return result  # type: ignore[no-any-return]


def _eval(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
            raise CalculationError(f"exponent {right} is too large")
        try:
            return _BINARY[type(node.op)](left, right)
        except (ZeroDivisionError, OverflowError, ValueError) as exc:
            raise CalculationError(str(exc)) from exc
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        try:
            return _FUNCTIONS[node.func.id](*(_eval(arg) for arg in node.args))
        except (ValueError, TypeError, OverflowError) as exc:
            raise CalculationError(f"{node.func.id}: {exc}") from exc
    raise CalculationError(f"unsupported element: {ast.unparse(node)!r}")


@tool(idempotent=True, timeout_s=5.0)
async def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression and return the result.

    Args:
        expression: arithmetic such as "2 * (3 + 4)" or "sqrt(16) + 2**10"
    """
    return str(evaluate(expression))
