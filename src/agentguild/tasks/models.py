"""Planned tasks: the plan a planner proposes, and the task and subtask records."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic

from ..types import JSONObject, SubtaskStatus, TaskStatus, Usage

FINISHED_TASK: frozenset[TaskStatus] = frozenset({"completed", "failed", "cancelled"})
"""Task statuses that are final."""
FINISHED_SUBTASK: frozenset[SubtaskStatus] = frozenset(
    {"completed", "failed", "skipped", "cancelled"}
)
"""Subtask statuses that are final."""


# ---- the plan (validated model output) ---------------------------------------------------


class PlannedSubtask(pydantic.BaseModel):
    """One step of a plan, as the planner proposed it."""

    model_config = pydantic.ConfigDict(coerce_numbers_to_str=True, extra="ignore")

    id: str = pydantic.Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    title: str = pydantic.Field(min_length=1, max_length=2000)
    """What to do, in one instruction."""
    category: str = "general"
    """Which kind of specialist should do it (research, code, analysis, ...)."""
    depends_on: list[str] = []
    """Ids of the subtasks whose results this one needs."""

    @pydantic.model_validator(mode="before")
    @classmethod
    def _accept_common_spellings(cls, data: Any) -> Any:
        """Weak models write `task`/`description` for the title and `dependencies` for the
        dependencies; accept those too."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "title" not in data:
            for key in ("task", "description", "name", "step"):
                if isinstance(data.get(key), str):
                    data["title"] = data[key]
                    break
        if "depends_on" not in data:
            for key in ("dependencies", "deps", "after", "requires"):
                if key in data:
                    data["depends_on"] = data[key]
                    break
        if isinstance(data.get("depends_on"), str | int):
            data["depends_on"] = [data["depends_on"]]
        if isinstance(data.get("category"), str):
            data["category"] = data["category"].strip().lower()
        return data


class Plan(pydantic.BaseModel):
    """A task decomposed into subtasks with dependencies (validated: unique ids, known
    dependencies, no cycles)."""

    subtasks: list[PlannedSubtask] = pydantic.Field(min_length=1)

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> Plan:
        ids = [subtask.id for subtask in self.subtasks]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"subtask ids must be unique; repeated: {duplicates}")
        known = set(ids)
        for subtask in self.subtasks:
            unknown = [d for d in subtask.depends_on if d not in known]
            if unknown:
                raise ValueError(f"subtask {subtask.id!r} depends on unknown subtasks {unknown}")
            if subtask.id in subtask.depends_on:
                raise ValueError(f"subtask {subtask.id!r} depends on itself")
        cycle = _find_cycle({s.id: s.depends_on for s in self.subtasks})
        if cycle:
            raise ValueError(f"subtask dependencies form a cycle: {' -> '.join(cycle)}")
        return self


def _find_cycle(graph: Mapping[str, list[str]]) -> list[str]:
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "visiting"
        path.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == "visiting":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = "done"
        return []

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


# ---- the records (persisted) -------------------------------------------------------------


@dataclass(slots=True)
class Mark:
    """One entry of a task's timeline: a subtask started or ended."""

    subtask_id: str
    kind: Literal["start", "end"]
    at: float
    """Wall-clock time (seconds since the epoch)."""


@dataclass(slots=True)
class Subtask:
    """One subtask of a task: what to do, who does it, and how it went."""

    id: str
    title: str
    category: str = "general"
    depends_on: tuple[str, ...] = ()
    status: SubtaskStatus = "pending"
    specialist: str = ""
    """The agent that works on it (set when it starts)."""
    result: str | None = None
    error: str | None = None
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    usage: Usage = field(default_factory=Usage)

    @property
    def duration_s(self) -> float | None:
        """How long it ran (the last attempt included), if it has finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_json(self) -> JSONObject:
        return {
            "id": self.id,
            "title": self.title,
            "category": self.category,
            "depends_on": list(self.depends_on),
            "status": self.status,
            "specialist": self.specialist,
            "result": self.result,
            "error": self.error,
            "attempts": self.attempts,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "usage": _usage_json(self.usage),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Subtask:
        return cls(
            id=data["id"],
            title=data["title"],
            category=data.get("category", "general"),
            depends_on=tuple(data.get("depends_on", ())),
            status=data.get("status", "pending"),
            specialist=data.get("specialist", ""),
            result=data.get("result"),
            error=data.get("error"),
            attempts=data.get("attempts", 0),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            usage=_usage_from(data.get("usage")),
        )


@dataclass(slots=True)
class Task:
    """A task for a planned team: its input, plan, progress and outcome."""

    input: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: TaskStatus = "pending"
    priority: int = 0
    """Higher runs first when tasks queue (see `TaskManager`)."""
    timeout_s: float | None = None
    """The whole task fails if it takes longer."""
    tenant_id: str = "default"
    agent_id: str | None = None
    """The configured planned team that runs it (on the server: the stored agent's id);
    None: the default team."""
    subtasks: list[Subtask] = field(default_factory=list)
    result: str | None = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    timeline: list[Mark] = field(default_factory=list)
    """Subtask starts and ends in the order they happened."""
    usage: Usage = field(default_factory=Usage)

    def subtask(self, subtask_id: str) -> Subtask:
        """The subtask with that id (KeyError if none)."""
        for subtask in self.subtasks:
            if subtask.id == subtask_id:
                return subtask
        raise KeyError(subtask_id)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_TASK

    def to_json(self) -> JSONObject:
        """The task, its subtasks and timeline as JSON-compatible data."""
        return {
            "id": self.id,
            "input": self.input,
            "status": self.status,
            "priority": self.priority,
            "timeout_s": self.timeout_s,
            "tenant_id": self.tenant_id,
            "agent_id": self.agent_id,
            "subtasks": [subtask.to_json() for subtask in self.subtasks],
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "timeline": [[m.subtask_id, m.kind, m.at] for m in self.timeline],
            "usage": _usage_json(self.usage),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Task:
        """Rebuild a task from `to_json()` output."""
        return cls(
            input=data["input"],
            id=data["id"],
            status=data.get("status", "pending"),
            priority=data.get("priority", 0),
            timeout_s=data.get("timeout_s"),
            tenant_id=data.get("tenant_id", "default"),
            agent_id=data.get("agent_id"),
            subtasks=[Subtask.from_json(s) for s in data.get("subtasks", ())],
            result=data.get("result"),
            error=data.get("error"),
            created_at=data.get("created_at", 0.0),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            timeline=[Mark(s, k, at) for s, k, at in data.get("timeline", ())],
            usage=_usage_from(data.get("usage")),
        )


def _usage_json(usage: Usage) -> JSONObject:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}


def _usage_from(data: object) -> Usage:
    if not isinstance(data, Mapping):
        return Usage()
    return Usage(int(data.get("prompt_tokens", 0)), int(data.get("completion_tokens", 0)))
