"""Swarm: a triage agent hands the customer over to the right specialist.

Each agent gets `transfer_to_<name>` tools; the one holding the conversation answers.

    python examples/swarm.py ["REQUEST"] [--model NAME] [--base-url URL]
"""

from __future__ import annotations

import asyncio

from _common import example_model, parse_args, show, show_result
from agentguild import Assistant, RunResult
from agentguild.agents.teams import Swarm, TeamState
from agentguild.agents.termination import HandoffTermination


async def main() -> None:
    args = parse_args(__doc__ or "", "I would like a refund for order 1234, it arrived broken.")
    async with example_model(args) as model:
        triage = Assistant(
            model,
            name="triage",
            description="first contact: finds out what the customer needs",
            system_prompt="You are the triage agent. Transfer refund and payment requests "
            "to refunds, and technical problems to tech. Do not answer them yourself.",
        )
        refunds = Assistant(
            model,
            name="refunds",
            description="refunds, returns and payment problems",
            system_prompt="You handle refunds. Confirm the refund and say when the money "
            "arrives. If you need the order number, transfer to the user to ask.",
        )
        tech = Assistant(
            model,
            name="tech",
            description="technical problems",
            system_prompt="You solve technical problems in a few short steps.",
        )
        swarm = Swarm(
            [triage, refunds, tech],
            name="support",
            handoffs={"triage": ["refunds", "tech"], "refunds": ["triage"], "tech": ["triage"]},
            user_handoff=True,
            termination=HandoffTermination("user"),
        )
        state = TeamState()  # keeps the conversation (and who holds it) for a follow-up
        async for event in swarm.run(args.task, state=state):
            show(event)
            if isinstance(event, RunResult):
                show_result(event)
        holder = state.next_speakers[0] if state.next_speakers else "nobody"
        print(f"(the conversation stays with {holder} for the customer's next message)")


if __name__ == "__main__":
    asyncio.run(main())
