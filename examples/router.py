"""Router: one routing decision, then the chosen specialist answers.

python examples/router.py ["REQUEST"] [--model NAME] [--base-url URL]
"""

from __future__ import annotations

import asyncio

from _common import example_model, parse_args, show, show_result
from agentguild import Assistant, RunResult
from agentguild.agents.teams import RouterAgent


async def main() -> None:
    args = parse_args(__doc__ or "", "I was charged twice for my subscription this month.")
    async with example_model(args) as model:
        specialists = [
            Assistant(
                model,
                name="billing",
                description="invoices, payments, refunds and subscriptions",
                system_prompt="You are the billing specialist. Help with the customer's "
                "billing question in two or three sentences.",
            ),
            Assistant(
                model,
                name="tech_support",
                description="bugs, error messages, crashes and how-to questions",
                system_prompt="You are technical support. Help the customer fix the "
                "problem in a few short steps.",
            ),
            Assistant(
                model,
                name="sales",
                description="plans, prices, upgrades and new purchases",
                system_prompt="You are in sales. Answer the customer's question about "
                "plans and prices briefly.",
            ),
        ]
        router = RouterAgent(specialists, model, name="help_desk", default="tech_support")
        async for event in router.run(args.task):
            show(event)
            if isinstance(event, RunResult):
                show_result(event)


if __name__ == "__main__":
    asyncio.run(main())
