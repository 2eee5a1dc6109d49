"""A team declared in YAML: `examples/teams/*.yaml` (or any spec file) built and run.

    python examples/yaml_team.py ["TASK"] [--team FILE] [--model NAME] [--base-url URL]

The same as `agentguild run --team FILE "TASK"`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from _common import example_model, show, show_result
from agentguild import RunResult
from agentguild.agents.spec import load_agent_spec

HERE = Path(__file__).parent


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("task", nargs="?", default="Explain what a hash table is, briefly.")
    parser.add_argument("--team", type=Path, default=HERE / "teams" / "expert_team.yaml")
    parser.add_argument("--model", help="configured model name (or model id with --base-url)")
    parser.add_argument("--base-url", help="an OpenAI-compatible endpoint, e.g. .../v1")
    args = parser.parse_args()
    async with example_model(args) as model:
        # The example's model replaces the models named in the file (like the CLI's --model).
        team = load_agent_spec(args.team, model=model)
        print(f"{type(team).__name__} {team.name!r} from {args.team}", file=sys.stderr)
        async for event in team.run(args.task):
            show(event)
            if isinstance(event, RunResult):
                show_result(event)


if __name__ == "__main__":
    asyncio.run(main())
