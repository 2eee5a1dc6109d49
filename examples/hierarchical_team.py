"""Hierarchical decision team: specialists -> manager -> executive.

The specialists are tools of the manager, the manager is a tool of the executive; each
level calls the one below and decides on what comes back.

    python examples/hierarchical_team.py ["QUESTION"] [--model NAME] [--base-url URL]
"""

from __future__ import annotations

import asyncio

from _common import example_model, parse_args, show, show_result
from agentguild import Assistant, RunResult
from agentguild.agents.agent_tool import AgentTool


async def main() -> None:
    args = parse_args(__doc__ or "", "Should we open a second office in Berlin next year?")
    async with example_model(args) as model:
        analyst = Assistant(
            model,
            name="financial_analyst",
            description="Assesses costs, revenue and financial risk of a proposal.",
            system_prompt="You are a financial analyst. Assess the proposal's costs, "
            "revenue and risks in three sentences.",
        )
        legal = Assistant(
            model,
            name="legal_advisor",
            description="Assesses legal and regulatory risk of a proposal.",
            system_prompt="You are a legal advisor. Name the main legal risks of the "
            "proposal in two sentences.",
        )
        manager = Assistant(
            model,
            name="manager",
            description="Consults the specialists and recommends a decision.",
            system_prompt="You are a manager. Ask the financial analyst and the legal "
            "advisor about the proposal, then recommend go or no-go with one reason.",
            tools=[AgentTool(analyst), AgentTool(legal)],
        )
        executive = Assistant(
            model,
            name="executive",
            system_prompt="You are the executive. Ask the manager for a recommendation, "
            "then state your final decision in one sentence.",
            tools=[AgentTool(manager, on_event=show)],
        )
        async for event in executive.run(args.task):
            show(event)
            if isinstance(event, RunResult):
                show_result(event)


if __name__ == "__main__":
    asyncio.run(main())
