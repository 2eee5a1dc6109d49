"""`Planner`: a model decomposes a task into subtasks with dependencies and categories."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import pydantic

from ..agents.teams._choose import resolve
from ..errors import BadRequestError, ContextLengthError
from ..llm.base import ChatModel, ChatRequest
from ..types import JSONObject, Message, Usage
from .models import Plan, PlannedSubtask

DEFAULT_CATEGORIES: Mapping[str, str] = {
    "research": "find, gather and summarise information",
    "code": "write, explain or review code",
    "analysis": "reason over facts or data: compare, calculate, evaluate",
}
"""The specialist categories of the brief's collaboration system."""

PLANNER_PROMPT = """You are a planner. Break the user's task into a few subtasks that \
specialists can do, and answer with JSON only.

Categories of specialists:
{categories}

Answer with a JSON object of this shape:
{{"subtasks": [{{"id": "s1", "title": "what to do", "category": "research", \
"depends_on": []}}, ...]}}

Rules: at most {max_subtasks} subtasks; ids are short and unique; `depends_on` lists the \
ids of subtasks whose results a subtask needs (leave it empty when it needs none, so \
independent subtasks run in parallel); every category is one of: {names}."""
"""The default planning prompt; `{categories}`, `{names}` and `{max_subtasks}` are filled in."""

ResponseFormat = Literal["json_schema", "json_object", "text"]

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


@dataclass(frozen=True, slots=True)
class PlanOutcome:
    """A plan, what it cost, and whether it is the fallback for an unusable answer."""

    plan: Plan
    usage: Usage
    fallback: bool = False
    problem: str = ""
    """Why the model's answer could not be used (when `fallback`)."""


class Planner:
    """Asks a model for a plan (JSON, validated), falling back to one subtask.

    Categories the model invents are mapped to `fallback_category`. If the answer is not
    a valid plan (a weak model's prose, a dependency cycle, ...), the plan is the whole task
    as a single subtask of `fallback_category`, so the task still gets done.
    `response_format` asks the model for JSON: 'json_schema' (constrained to the plan's
    schema, best with the local model, vLLM, llama.cpp, OpenAI), 'json_object', or 'text'
    for endpoints that support neither.
    """

    def __init__(
        self,
        model: ChatModel | str,
        *,
        categories: Mapping[str, str] = DEFAULT_CATEGORIES,
        fallback_category: str | None = None,
        max_subtasks: int = 8,
        prompt: str = PLANNER_PROMPT,
        response_format: ResponseFormat = "json_schema",
        model_params: Mapping[str, Any] | None = None,
        name: str = "planner",
    ) -> None:
        if not categories:
            raise ValueError("a planner needs at least one category")
        if max_subtasks < 1:
            raise ValueError("max_subtasks must be at least 1")
        self.model: ChatModel = resolve(model)
        self.categories = dict(categories)
        self.fallback_category = fallback_category or next(iter(self.categories))
        self.max_subtasks = max_subtasks
        self.prompt = prompt
        self.response_format = response_format
        self.model_params = dict(model_params or {})
        self.name = name

    async def plan(self, task: str) -> PlanOutcome:
        """A plan for `task` (never raises for a bad answer: see the class docstring)."""
        system = self.prompt.format(
            categories="\n".join(f"- {name}: {what}" for name, what in self.categories.items()),
            names=", ".join(self.categories),
            max_subtasks=self.max_subtasks,
        )
        request = ChatRequest(
            messages=(Message.system(system), Message.user(task)),
            response_format=self._response_format(),
            **self.model_params,
        )
        try:
            response = await self.model.complete(request)
        except BadRequestError as exc:
            if request.response_format is None or isinstance(exc, ContextLengthError):
                raise
            # The endpoint rejects this response_format: ask again for plain text.
            response = await self.model.complete(replace(request, response_format=None))
        plan, problem = self.parse(response.message.text)
        if plan is None:
            return PlanOutcome(self.single(task), response.usage, True, problem)
        return PlanOutcome(plan, response.usage)

    def parse(self, text: str) -> tuple[Plan | None, str]:
        """The plan in a model's answer, or None and what was wrong with it."""
        data = _json_in(text)
        if data is None:
            return None, "the answer holds no JSON object"
        try:
            plan = Plan.model_validate(_unwrap(data))
        except pydantic.ValidationError as exc:
            return None, f"invalid plan: {exc.error_count()} problem(s): {exc.errors()[0]['msg']}"
        if len(plan.subtasks) > self.max_subtasks:
            return None, f"{len(plan.subtasks)} subtasks (at most {self.max_subtasks})"
        for subtask in plan.subtasks:
            if subtask.category not in self.categories:
                subtask.category = self.fallback_category
        return plan, ""

    def single(self, task: str) -> Plan:
        """The fallback plan: the whole task as one subtask."""
        return Plan(
            subtasks=[PlannedSubtask(id="task", title=task, category=self.fallback_category)]
        )

    def _response_format(self) -> JSONObject | None:
        if self.response_format == "text":
            return None
        if self.response_format == "json_object":
            return {"type": "json_object"}
        return {"type": "json_schema", "json_schema": {"name": "plan", "schema": self._schema()}}

    def _schema(self) -> JSONObject:
        subtask = {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "title": {"type": "string"},
                "category": {"type": "string", "enum": list(self.categories)},
                "depends_on": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["id", "title", "category", "depends_on"],
        }
        return {
            "type": "object",
            "properties": {
                "subtasks": {
                    "type": "array",
                    "items": subtask,
                    "minItems": 1,
                    "maxItems": self.max_subtasks,
                }
            },
            "required": ["subtasks"],
        }


def _json_in(text: str) -> object | None:
    """The first JSON object (or array) in `text`: bare, fenced, or inside prose."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for opening in "{[":  # an object first: prose may hold a stray "[1]"
        for candidate in candidates:
            start = candidate.find(opening)
            while start != -1:
                try:
                    value: object = decoder.raw_decode(candidate, start)[0]
                except json.JSONDecodeError:
                    start = candidate.find(opening, start + 1)
                    continue
                return value
    return None


def _unwrap(data: object) -> object:
    """Plans sometimes come as a bare list, or under another key ("steps", "plan", ...)."""
    if isinstance(data, list):
        return {"subtasks": data}
    if isinstance(data, dict) and "subtasks" not in data:
        for key in ("steps", "tasks", "plan"):
            inner = data.get(key)
            if isinstance(inner, list):
                return {"subtasks": inner}
            if isinstance(inner, dict):
                return _unwrap(inner)
    return data
