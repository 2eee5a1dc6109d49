"""Tools that ship with agentguild."""

from .calculator import CalculationError, calculator, evaluate

__all__ = ["CalculationError", "calculator", "evaluate"]
