"""Planner: JSON plans from a model, validated, with a fallback for unusable answers."""

from __future__ import annotations

import pytest

from agentguild import BadRequestError
from agentguild.llm import ScriptedModel
from agentguild.tasks import Plan, Planner

PLAN = """{"subtasks": [
  {"id": "r1", "title": "Find sales data", "category": "research", "depends_on": []},
  {"id": "c1", "title": "Write a chart script", "category": "code", "depends_on": []},
  {"id": "a1", "title": "Compare quarters", "category": "analysis", "depends_on": ["r1", "c1"]}
]}"""


async def test_a_json_plan_becomes_subtasks_with_dependencies() -> None:
    outcome = await Planner(ScriptedModel([PLAN])).plan("Analyse our sales")
    assert not outcome.fallback
    assert [(s.id, s.category, s.depends_on) for s in outcome.plan.subtasks] == [
        ("r1", "research", []),
        ("c1", "code", []),
        ("a1", "analysis", ["r1", "c1"]),
    ]
    assert outcome.usage.total_tokens > 0


async def test_the_request_asks_for_json_constrained_to_the_categories() -> None:
    model = ScriptedModel([PLAN])
    await Planner(model, categories={"research": "find", "code": "write"}).plan("x")
    request = model.requests[0]
    assert request.response_format is not None
    schema = request.response_format["json_schema"]["schema"]
    item = schema["properties"]["subtasks"]["items"]
    assert item["properties"]["category"]["enum"] == ["research", "code"]
    assert "- research: find" in request.messages[0].text
    assert request.messages[1].text == "x"


@pytest.mark.parametrize(
    "answer",
    [
        "Sure! Here is the plan:\n```json\n" + PLAN + "\n```\nGood luck.",
        "Plan (step [1] first): " + PLAN,
        '{"plan": ' + PLAN + "}",
        PLAN.replace('"depends_on"', '"dependencies"').replace('"title"', '"task"'),
    ],
    ids=["fenced", "in-prose", "wrapped", "other-spellings"],
)
def test_plans_are_found_in_the_usual_shapes_of_weak_model_answers(answer: str) -> None:
    plan, problem = Planner(ScriptedModel([])).parse(answer)
    assert plan is not None, problem
    assert [s.id for s in plan.subtasks] == ["r1", "c1", "a1"]
    assert plan.subtasks[2].depends_on == ["r1", "c1"]


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ("I would first research, then code.", "no JSON"),
        ('{"subtasks": []}', "invalid plan"),
        ('{"subtasks": [{"id": "a", "title": "x", "depends_on": ["zz"]}]}', "invalid plan"),
        (
            '{"subtasks": [{"id": "a", "title": "x", "depends_on": ["b"]},'
            ' {"id": "b", "title": "y", "depends_on": ["a"]}]}',
            "invalid plan",
        ),
    ],
    ids=["prose", "empty", "unknown-dependency", "cycle"],
)
async def test_an_unusable_answer_falls_back_to_the_whole_task_as_one_subtask(
    answer: str, problem: str
) -> None:
    outcome = await Planner(ScriptedModel([answer])).plan("Do the thing")
    assert outcome.fallback
    assert problem in outcome.problem
    [only] = outcome.plan.subtasks
    assert (only.title, only.category, only.depends_on) == ("Do the thing", "research", [])


async def test_too_many_subtasks_fall_back_too() -> None:
    many = ",".join(f'{{"id": "s{i}", "title": "t"}}' for i in range(5))
    outcome = await Planner(ScriptedModel(['{"subtasks": [' + many + "]}"]), max_subtasks=4).plan(
        "x"
    )
    assert outcome.fallback
    assert "at most 4" in outcome.problem


def test_invented_categories_go_to_the_fallback_category() -> None:
    planner = Planner(ScriptedModel([]), fallback_category="analysis")
    plan, _ = planner.parse('{"subtasks": [{"id": "a", "title": "x", "category": "Poetry"}]}')
    assert plan is not None
    assert plan.subtasks[0].category == "analysis"


def test_plan_validation_reports_duplicates() -> None:
    with pytest.raises(ValueError, match="unique"):
        Plan.model_validate({"subtasks": [{"id": "a", "title": "x"}, {"id": "a", "title": "y"}]})


async def test_an_endpoint_rejecting_the_response_format_is_asked_again_for_text() -> None:
    model = ScriptedModel([BadRequestError("response_format json_schema is not supported"), PLAN])
    outcome = await Planner(model).plan("x")
    assert not outcome.fallback
    assert [r.response_format is None for r in model.requests] == [False, True]
