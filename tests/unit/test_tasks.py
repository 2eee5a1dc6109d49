"""PlannedTeam: plan, parallel subtasks on specialists, synthesis, progress, failures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest

from agentguild import Assistant, ErrorEvent, Message, RunResult, TextDelta
from agentguild.agents.termination import ExternalStop
from agentguild.llm import ChatRequest, ChatResponse, ScriptedModel
from agentguild.tasks import InMemoryTaskStore, PlannedTeam, Task
from agentguild.types import Event, SubtaskUpdate, TaskUpdate


def plan(*subtasks: tuple[str, str, Sequence[str]]) -> str:
    """A plan's JSON from (id, category, depends_on) triples; titles are 'do <id>'."""
    return json.dumps(
        {
            "subtasks": [
                {"id": i, "title": f"do {i}", "category": c, "depends_on": list(d)}
                for i, c, d in subtasks
            ]
        }
    )


def echo_specialist(name: str) -> Assistant:
    """Answers '<name> did <title>' (the title is on the prompt's 'Your part' line)."""

    def reply(request: ChatRequest) -> str:
        prompt = request.messages[-1].text
        part = next(line for line in prompt.splitlines() if line.startswith("Your part"))
        return f"{name} did {part.split(': ', 1)[1]}"

    return Assistant(ScriptedModel([reply], cycle=True), name=name)


class Rendezvous:
    """Answers like `echo_specialist`, but only once `parties` calls are waiting together."""

    def __init__(self, parties: int) -> None:
        self.name = "rendezvous"
        self.barrier = asyncio.Barrier(parties)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        await self.barrier.wait()
        part = next(
            line for line in request.messages[-1].text.splitlines() if line.startswith("Your")
        )
        return ChatResponse(Message.assistant(f"did {part.split(': ', 1)[1]}"))

    def stream(self, request: ChatRequest) -> object:
        raise NotImplementedError


class Blocking:
    name = "blocking"

    def __init__(self) -> None:
        self.called = asyncio.Event()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.called.set()
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")

    def stream(self, request: ChatRequest) -> object:
        raise NotImplementedError


def team(planner_answer: str, **options: object) -> PlannedTeam:
    specialists = {
        "research": echo_specialist("researcher"),
        "code": echo_specialist("coder"),
        "analysis": echo_specialist("analyst"),
    }
    synthesiser = ScriptedModel([lambda r: "merged: " + r.messages[-1].text], cycle=True)
    return PlannedTeam(
        ScriptedModel([planner_answer]),
        specialists,
        synthesiser=synthesiser,
        **options,  # type: ignore[arg-type]
    )


async def run(team: PlannedTeam, text: str = "Big task", **kwargs: object) -> list[Event]:
    return [event async for event in team.run(text, **kwargs)]  # type: ignore[arg-type]


async def test_independent_subtasks_run_in_parallel_on_their_specialists() -> None:
    # Given three independent subtasks whose specialist only answers when all three wait
    shared = Assistant(Rendezvous(3), name="worker")
    planned = PlannedTeam(
        ScriptedModel([plan(("a", "research", ()), ("b", "code", ()), ("c", "analysis", ()))]),
        {"research": shared, "code": shared, "analysis": shared},
        synthesiser=ScriptedModel(["merged"]),
    )
    task = Task("three things")
    # When the task runs (sequential subtasks would never pass the rendezvous)
    result = await asyncio.wait_for(planned.result(task=task), 5)
    # Then every subtask started before any ended
    kinds = [mark.kind for mark in task.timeline]
    assert kinds == ["start", "start", "start", "end", "end", "end"]
    assert result.output == "merged"
    assert [s.status for s in task.subtasks] == ["completed"] * 3


async def test_a_dependent_subtask_waits_for_and_builds_on_its_dependencies() -> None:
    planned = team(plan(("r", "research", ()), ("c", "code", ()), ("a", "analysis", ("r", "c"))))
    task = Task("Report")
    await planned.result(task=task)
    order = [(m.subtask_id, m.kind) for m in task.timeline]
    assert order.index(("a", "start")) > max(order.index(("r", "end")), order.index(("c", "end")))
    analyst = planned.scheduler.specialists["analysis"]
    prompt = analyst.model.requests[0].messages[-1].text  # type: ignore[attr-defined]
    assert "- do r: researcher did do r" in prompt
    assert "- do c: coder did do c" in prompt


async def test_subtasks_go_to_the_specialist_of_their_category_or_the_default() -> None:
    planned = team(plan(("r", "research", ()), ("x", "poetry", ())))
    task = Task("t")
    await planned.result(task=task)
    assert [(s.id, s.category, s.specialist) for s in task.subtasks] == [
        ("r", "research", "researcher"),
        ("x", "research", "researcher"),  # the planner mapped the unknown category
    ]


async def test_the_synthesiser_merges_every_result_into_the_answer() -> None:
    planned = team(plan(("r", "research", ()), ("c", "code", ())))
    result = await planned.result("Summarise")
    assert result.output.startswith("merged: Task: Summarise")
    assert "researcher did do r" in result.output
    assert "coder did do c" in result.output
    assert [m.name for m in result.messages] == ["planned_team"]


async def test_a_single_subtask_plan_needs_no_synthesis() -> None:
    planned = team("no JSON here, sorry")
    result = await planned.result("Just answer")
    assert result.output == "researcher did Just answer"
    assert planned.synthesiser is not None
    assert planned.synthesiser.agent.model.requests == []  # type: ignore[attr-defined]


async def test_progress_streams_as_task_and_subtask_updates() -> None:
    events = await run(team(plan(("r", "research", ()), ("a", "analysis", ("r",)))))
    updates = [
        (e.subtask_id, e.status) if isinstance(e, SubtaskUpdate) else ("task", e.status)
        for e in events
        if isinstance(e, TaskUpdate | SubtaskUpdate)
    ]
    assert updates == [
        ("task", "running"),
        ("task", "running"),  # planned
        ("r", "pending"),
        ("a", "pending"),
        ("r", "running"),
        ("r", "completed"),
        ("a", "running"),
        ("a", "completed"),
        ("task", "completed"),
    ]
    assert isinstance(events[-1], RunResult)


async def test_max_concurrency_bounds_how_many_subtasks_run_at_once() -> None:
    planned = team(plan(("a", "research", ()), ("b", "research", ()), ("c", "research", ())),
                   max_concurrency=1)  # fmt: skip
    task = Task("t")
    await planned.result(task=task)
    assert [m.kind for m in task.timeline] == ["start", "end"] * 3


async def test_a_failed_subtask_is_retried_when_allowed() -> None:
    flaky = Assistant(ScriptedModel([RuntimeError("rate limited"), "second try"]), name="flaky")
    planned = PlannedTeam(
        ScriptedModel([plan(("a", "research", ()))]), {"research": flaky}, retries=1
    )
    task = Task("t")
    events = await run(planned, task=task)
    subtask = task.subtask("a")
    assert (subtask.status, subtask.attempts, subtask.result) == ("completed", 2, "second try")
    retry = [e for e in events if isinstance(e, SubtaskUpdate) and "retrying" in e.detail]
    assert len(retry) == 1
    assert "rate limited" in retry[0].detail


async def test_dependents_of_a_failed_subtask_are_skipped_and_the_rest_still_merges() -> None:
    broken = Assistant(ScriptedModel([RuntimeError("down")]), name="broken")
    planned = PlannedTeam(
        ScriptedModel([plan(("r", "research", ()), ("c", "code", ()), ("a", "analysis", ("c",)))]),
        {"research": echo_specialist("researcher"), "code": broken, "analysis": broken},
        synthesiser=ScriptedModel([lambda r: "merged: " + r.messages[-1].text]),
    )
    task = Task("t")
    result = await planned.result(task=task)
    statuses = {s.id: (s.status, s.error) for s in task.subtasks}
    assert statuses["r"] == ("completed", None)
    assert statuses["c"][0] == "failed"
    assert "down" in (statuses["c"][1] or "")
    assert statuses["a"] == ("skipped", "dependency 'c' failed")
    assert (task.status, result.stop_reason) == ("completed", "completed")
    assert "(not available: failed)" in result.output


async def test_when_every_subtask_fails_the_task_fails() -> None:
    broken = Assistant(ScriptedModel([RuntimeError("down")], cycle=True), name="broken")
    planned = PlannedTeam(ScriptedModel([plan(("a", "research", ()))]), {"research": broken})
    task = Task("t")
    events = await run(planned, task=task)
    result = events[-1]
    assert isinstance(result, RunResult)
    assert (task.status, result.stop_reason) == ("failed", "error")
    assert "every subtask failed" in (task.error or "")
    assert any(isinstance(e, ErrorEvent) for e in events)


async def test_a_subtask_over_its_time_limit_fails() -> None:
    stuck = Assistant(Blocking(), name="stuck")
    planned = PlannedTeam(
        ScriptedModel([plan(("a", "research", ()))]), {"research": stuck}, subtask_timeout_s=0.05
    )
    task = Task("t")
    await asyncio.wait_for(planned.result(task=task), 5)
    assert (task.subtask("a").status, task.subtask("a").error) == ("failed", "timed out")


async def test_a_task_over_its_time_limit_fails_promptly() -> None:
    planned = PlannedTeam(
        ScriptedModel([plan(("a", "research", ()))]), {"research": Assistant(Blocking(), name="s")}
    )
    task = Task("t", timeout_s=0.05)
    result = await asyncio.wait_for(planned.result(task=task), 5)
    assert (task.status, result.stop_reason) == ("failed", "error")
    assert task.error == "timeout after 0.05s"
    assert task.subtask("a").status == "cancelled"


async def test_an_external_stop_cancels_the_task_and_its_running_subtasks() -> None:
    model = Blocking()
    store = InMemoryTaskStore()
    planned = PlannedTeam(
        ScriptedModel([plan(("a", "research", ()), ("b", "research", ("a",)))]),
        {"research": Assistant(model, name="s")},
        store=store,
    )
    stop = ExternalStop()
    task = Task("t")
    running = asyncio.ensure_future(planned.result(task=task, stop=stop))
    await model.called.wait()
    stop.stop("user cancelled")
    result = await asyncio.wait_for(running, 5)
    assert result.stop_reason == "cancelled"
    stored = await store.get(task.id)
    assert stored is not None
    assert (stored.status, stored.error) == ("cancelled", "user cancelled")
    assert [s.status for s in stored.subtasks] == ["cancelled", "cancelled"]


async def test_a_stored_task_resumes_running_only_its_unfinished_subtasks() -> None:
    # Given a task whose first run completed 'r' but failed 'c'
    broken = Assistant(ScriptedModel([RuntimeError("down")]), name="coder")
    first = PlannedTeam(
        ScriptedModel([plan(("r", "research", ()), ("c", "code", ()))]),
        {"research": echo_specialist("researcher"), "code": broken},
    )
    task = Task("t")
    await first.result(task=task)
    assert [s.status for s in task.subtasks] == ["completed", "failed"]
    # When it is run again with a working coder (and no planner answer available)
    second = team("unused")
    second_planner = second.planner.model
    result = await second.result(task=Task.from_json(task.to_json()))
    # Then only 'c' ran again, and the plan was kept
    assert second_planner.requests == []  # type: ignore[attr-defined]
    assert second.scheduler.specialists["research"].model.requests == []  # type: ignore[attr-defined]
    assert "coder did do c" in result.output


async def test_the_store_holds_the_task_subtasks_results_and_timings() -> None:
    store = InMemoryTaskStore()
    planned = team(plan(("r", "research", ()), ("c", "code", ())), store=store)
    task = Task("Persist me", tenant_id="acme")
    await planned.result(task=task)
    stored = await store.get(task.id, tenant_id="acme")
    assert stored is not None
    assert stored.status == "completed"
    assert stored.result is not None
    assert stored.result.startswith("merged")
    assert [(s.id, s.status, s.specialist) for s in stored.subtasks] == [
        ("r", "completed", "researcher"),
        ("c", "completed", "coder"),
    ]
    for subtask in stored.subtasks:
        assert subtask.duration_s is not None
        assert subtask.duration_s >= 0
    assert len(stored.timeline) == 4
    assert await store.get(task.id) is None  # another tenant sees nothing


async def test_a_run_needs_a_user_message() -> None:
    planned = team(plan(("a", "research", ())))
    with pytest.raises(ValueError, match="user message"):
        await planned.result([Message.system("x")])


async def test_stream_is_passed_on_to_the_specialists() -> None:
    events = await run(team(plan(("r", "research", ()), ("c", "code", ()))), stream=True)
    deltas = {e.agent for e in events if isinstance(e, TextDelta)}
    assert deltas == {"researcher", "coder", "synthesiser"}
