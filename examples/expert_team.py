"""Expert team: a researcher, a writer and a reviewer work on a text in turn.

The reviewer says APPROVE when the draft is good; the team also stops after six messages.

    python examples/expert_team.py ["TASK"] [--model NAME] [--base-url URL]
"""

from __future__ import annotations

import asyncio

from _common import example_model, parse_args, show, show_result
from agentguild import Assistant, RunResult
from agentguild.agents.teams import RoundRobinTeam
from agentguild.agents.termination import MaxMessages, TextMention


async def main() -> None:
    args = parse_args(__doc__ or "", "Explain in one paragraph why the sky is blue.")
    async with example_model(args) as model:
        team = RoundRobinTeam(
            [
                Assistant(
                    model,
                    name="researcher",
                    system_prompt="You are a researcher. List the key facts for the task "
                    "in at most five short bullet points.",
                ),
                Assistant(
                    model,
                    name="writer",
                    system_prompt="You are a writer. Turn the researcher's facts into one "
                    "clear paragraph. If the reviewer asked for changes, apply them.",
                ),
                Assistant(
                    model,
                    name="reviewer",
                    system_prompt="You are a reviewer. If the writer's paragraph is accurate "
                    "and clear, reply with APPROVE. Otherwise say briefly what to change.",
                ),
            ],
            name="expert_team",
            termination=TextMention("APPROVE", sources=["reviewer"]) | MaxMessages(6),
        )
        async for event in team.run(args.task):
            show(event)
            if isinstance(event, RunResult):
                show_result(event)


if __name__ == "__main__":
    asyncio.run(main())
