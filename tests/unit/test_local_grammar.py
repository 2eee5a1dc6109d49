"""Grammars that constrain the local model: decision, tool arguments, response formats."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from agentguild import BadRequestError
from agentguild.llm._local_grammar import (
    decision_grammar,
    parse_decision,
    response_format_grammar,
    schema_grammar,
    strict_schema,
)


def test_auto_decision_allows_a_message_or_any_offered_call() -> None:
    grammar = decision_grammar(["add", "search"], allow_text=True)

    assert grammar == (
        'root ::= "message:" | call\ncall ::= "functions.add:" | "functions.search:"\n'
    )


def test_required_decision_has_no_message_branch() -> None:
    grammar = decision_grammar(["add", "search"], allow_text=False)

    assert grammar.startswith("root ::= call\n")
    assert "message" not in grammar


def test_decision_literals_escape_awkward_tool_names() -> None:
    grammar = decision_grammar(['we"ird\\name'], allow_text=False)

    assert '"functions.we\\"ird\\\\name:"' in grammar


def test_parse_decision_maps_text_to_a_tool_or_none() -> None:
    assert parse_decision("message:", ["add"]) is None
    assert parse_decision("functions.add:", ["add", "addition"]) == "add"
    with pytest.raises(ValueError, match="unexpected decision"):
        parse_decision("functions.ad", ["add"])


def test_strict_schema_closes_objects_recursively_but_keeps_explicit_choices() -> None:
    schema = {
        "type": "object",
        "properties": {
            "inner": {"type": "object", "properties": {"x": {"type": "integer"}}},
            "extra": {"type": "object", "properties": {}, "additionalProperties": True},
            "items": {"type": "array", "items": {"type": "object", "properties": {}}},
        },
    }

    strict = strict_schema(schema)

    assert strict["additionalProperties"] is False
    assert strict["properties"]["inner"]["additionalProperties"] is False
    assert strict["properties"]["extra"]["additionalProperties"] is True
    assert strict["properties"]["items"]["items"]["additionalProperties"] is False
    assert "additionalProperties" not in schema


def test_argument_strings_cannot_contain_raw_control_characters() -> None:
    pytest.importorskip("llama_cpp", reason="the schema converter ships with llama-cpp-python")
    grammar = schema_grammar(
        {"type": "object", "properties": {"code": {"type": "string"}}}, what="tool 'run'"
    )

    char_rule = next(line for line in grammar.splitlines() if line.startswith("char ::="))
    assert char_rule.startswith(r'char ::= [^"\\\x7F\x00-\x1F] |')


def test_pattern_dots_cannot_produce_quotes_or_control_characters() -> None:
    pytest.importorskip("llama_cpp", reason="the schema converter ships with llama-cpp-python")
    schema = {"type": "object", "properties": {"id": {"type": "string", "pattern": "^a.+$"}}}

    grammar = schema_grammar(schema, what="tool 'lookup'")

    assert r'dot ::= [^"\\\x7F\x00-\x1F]' in grammar.splitlines()


def test_pydantic_schemas_with_refs_convert() -> None:
    pytest.importorskip("llama_cpp", reason="the schema converter ships with llama-cpp-python")

    class Point(BaseModel):
        x: float
        y: float

    class Segment(BaseModel):
        start: Point
        end: Point
        label: str | None = None

    grammar = schema_grammar(Segment.model_json_schema(), what="tool 'draw'")

    assert grammar.count("root ::=") == 1
    assert '"\\"start\\""' in grammar


def test_unsupported_schema_is_a_bad_request_naming_the_tool() -> None:
    pytest.importorskip("llama_cpp", reason="the schema converter ships with llama-cpp-python")
    schema = {"type": "object", "properties": {"x": {"type": "complex-number"}}}

    with pytest.raises(BadRequestError, match="tool 'calc'"):
        schema_grammar(schema, what="tool 'calc'")


def test_response_formats() -> None:
    pytest.importorskip("llama_cpp", reason="the JSON grammars ship with llama-cpp-python")

    assert response_format_grammar(None) is None
    assert response_format_grammar({"type": "text"}) is None
    assert "root" in (response_format_grammar({"type": "json_object"}) or "")
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    named = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
    assert '"\\"ok\\""' in (response_format_grammar(named) or "")
    with pytest.raises(BadRequestError, match="not supported"):
        response_format_grammar({"type": "yaml"})
