"""Selector group chat: a model picks who speaks next; several may speak in parallel.

python examples/selector_chat.py ["TOPIC"] [--model NAME] [--base-url URL]
"""

from __future__ import annotations

import asyncio

from _common import example_model, parse_args, show, show_result
from agentguild import Assistant, RunResult
from agentguild.agents.teams import SelectorTeam
from agentguild.agents.termination import MaxMessages, TextMention


async def main() -> None:
    args = parse_args(__doc__ or "", "Plan a one-day team offsite for 12 people.")
    async with example_model(args) as model:
        members = [
            Assistant(
                model,
                name="planner",
                description="proposes the agenda and the overall plan",
                system_prompt="You plan events. Propose or refine the agenda in a few lines.",
            ),
            Assistant(
                model,
                name="budget",
                description="estimates and checks costs",
                system_prompt="You keep the budget. Estimate the costs of the plan briefly.",
            ),
            Assistant(
                model,
                name="critic",
                description="points out problems; says DONE when the plan is good",
                system_prompt="You review the plan. Name one problem, or reply DONE if "
                "the plan and budget are good.",
            ),
        ]
        chat = SelectorTeam(
            members,
            model,
            name="offsite_chat",
            parallel=True,  # the selector may name several members to speak at once
            termination=TextMention("DONE", sources=["critic"]) | MaxMessages(6),
        )
        async for event in chat.run(args.task):
            show(event)
            if isinstance(event, RunResult):
                show_result(event)


if __name__ == "__main__":
    asyncio.run(main())
