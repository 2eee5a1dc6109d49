"""Every example in examples/ runs to the end against the fake LLM server.

Each example runs in its own process, as a user would start it, pointed at an in-process
`FakeLLMServer` whose responder plays every role the examples need: planner, selector,
router, tool-calling manager, swarm triage, team member and synthesiser.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agentguild.testing import FakeLLMServer, FakeToolCall, Reply

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
SPECS = sorted((EXAMPLES / "teams").glob("*.yaml"))

PLAN = {
    "subtasks": [
        {"id": "r1", "title": "Collect the facts", "category": "research", "depends_on": []},
        {"id": "c1", "title": "Write an example", "category": "code", "depends_on": []},
        {"id": "a1", "title": "Compare", "category": "analysis", "depends_on": ["r1", "c1"]},
    ]
}


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else ""


def _choices(question: str) -> list[str]:
    match = re.search(r"Choose from: (.+)\.\s*$", question)
    return match.group(1).split(", ") if match else []


def _arguments(tool: dict[str, Any], task: str) -> dict[str, Any]:
    """Plausible arguments for a tool: its required string parameters filled in."""
    parameters = tool["function"].get("parameters") or {}
    properties = parameters.get("properties") or {}
    return {
        name: "6 * 7" if name == "expression" else task[:80]
        for name in parameters.get("required", [])
        if properties.get(name, {}).get("type") == "string"
    }


def respond(request: dict[str, Any]) -> Reply:
    """Answers like a cooperative model, by what the request is for."""
    messages: list[dict[str, Any]] = request["messages"]
    system = _text(messages[0]) if messages[0]["role"] == "system" else ""
    last = messages[-1]
    if system.startswith("You are a planner"):
        return Reply(json.dumps(PLAN))
    if system.startswith(("You choose who speaks next", "You route")):
        names = _choices(_text(last))
        several = "separated by commas" in system
        return Reply(", ".join(names[:2] if several else names[:1]))
    if system.startswith("You write the final answer"):
        return Reply("Final answer: everything merged.")
    if last["role"] == "tool":
        return Reply(f"Done: {_text(last)[:120]}")
    tools = request.get("tools") or []
    from_user = last["role"] == "user" and "name" not in last
    if tools and from_user:
        transfers = [t for t in tools if t["function"]["name"].startswith("transfer_to_")]
        handoff = [t for t in transfers if t["function"]["name"] != "transfer_to_user"]
        if handoff:
            return Reply(tool_calls=[FakeToolCall(handoff[0]["function"]["name"], {})])
        calls = [t for t in tools if t not in transfers]
        if calls:
            task = _text(last)
            return Reply(
                tool_calls=[FakeToolCall(t["function"]["name"], _arguments(t, task)) for t in calls]
            )
    for keyword in ("APPROVE", "DONE"):
        if keyword in system:
            return Reply(keyword)
    return Reply(f"Noted: {_text(last)[:60]}")


@pytest.fixture
async def fake_server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer(responder=respond, record_requests=False) as server:
        yield server


async def run_example(script: Path, base_url: str, *extra: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        "--base-url",
        base_url,
        "--model",
        "fake-model",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 120)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, out.decode(), err.decode()


EXPECTED = {
    "expert_team.py": ["--> researcher (round robin)", "[reviewer] APPROVE", "=== answer ==="],
    "hierarchical_team.py": ["calls manager(", "calls financial_analyst(", "=== answer ==="],
    "router.py": ["--> billing (router)", "[billing]", "=== answer ==="],
    "swarm.py": ["[triage] hands off to refunds", "[refunds]", "stays with refunds"],
    "selector_chat.py": ["--> planner, budget (selector)", "=== answer ==="],
    "planned_task.py": [
        "subtask a1 [analysis] completed by analyst",
        "Final answer: everything merged.",
        "stored task",
    ],
    "yaml_team.py": ["[reviewer] APPROVE", "=== answer ==="],
}


def test_every_example_has_expectations() -> None:
    known = {"assistant_with_tools.py", *EXPECTED}
    assert {p.name for p in SCRIPTS} <= known, "add the new example to EXPECTED"


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
async def test_example_runs_against_the_fake_llm(script: Path, fake_server: FakeLLMServer) -> None:
    code, out, err = await run_example(script, fake_server.base_url)
    assert code == 0, err
    for expected in EXPECTED.get(script.name, []):
        assert expected in out, f"{expected!r} not in the output:\n{out}"


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
async def test_each_yaml_team_runs_against_the_fake_llm(
    spec: Path, fake_server: FakeLLMServer
) -> None:
    code, out, err = await run_example(
        EXAMPLES / "yaml_team.py", fake_server.base_url, "--team", str(spec), "A task"
    )
    assert code == 0, err
    assert "=== answer ===" in out
