"""Planned task: a planner splits the task into subtasks routed to research, code and
analysis specialists; independent subtasks run in parallel; a synthesiser merges them.

Progress streams as it happens, and the task record (status, timings, results) is kept in
a task store.

    python examples/planned_task.py ["TASK"] [--model NAME] [--base-url URL]
"""

from __future__ import annotations

import asyncio

from _common import example_model, parse_args, show, show_result
from agentguild import Assistant, RunResult
from agentguild.tasks import InMemoryTaskStore, PlannedTeam, Task


async def main() -> None:
    args = parse_args(
        __doc__ or "",
        "Compare Python and Go for writing a small web API: performance, tooling and a "
        "minimal code example in each.",
    )
    async with example_model(args) as model:
        specialists = {
            "research": Assistant(
                model,
                name="researcher",
                description="find and summarise facts",
                system_prompt="You research. Give the key facts briefly.",
            ),
            "code": Assistant(
                model,
                name="coder",
                description="write short code examples",
                system_prompt="You write short, correct code examples.",
            ),
            "analysis": Assistant(
                model,
                name="analyst",
                description="compare options and draw conclusions",
                system_prompt="You analyse and compare. Be concise and concrete.",
            ),
        }
        store = InMemoryTaskStore()
        team = PlannedTeam(model, specialists, synthesiser=model, store=store, max_concurrency=4)
        task = Task(args.task, priority=1, timeout_s=600)
        async for event in team.run(task=task):
            show(event)
            if isinstance(event, RunResult):
                show_result(event)
        stored = await store.get(task.id)
        if stored is not None:
            print(f"\nstored task {stored.id}: {stored.status}")
            for subtask in stored.subtasks:
                took = f"{subtask.duration_s:.2f}s" if subtask.duration_s is not None else "-"
                print(f"  {subtask.id:<10} {subtask.category:<9} {subtask.status:<10} {took}")


if __name__ == "__main__":
    asyncio.run(main())
