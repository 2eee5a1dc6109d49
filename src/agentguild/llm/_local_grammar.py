"""GBNF grammars that constrain the local model: the text-or-tool decision, tool arguments
(from the tool's JSON schema) and JSON response formats."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import BadRequestError
from ._local_prompt import CALL_PREFIX, MESSAGE_PREFIX

_MESSAGE_MARK = MESSAGE_PREFIX.rstrip()


def gbnf_literal(text: str) -> str:
    """`text` as a GBNF string literal (GBNF accepts JSON's escapes)."""
    return json.dumps(text)


def decision_grammar(tool_names: Sequence[str], *, allow_text: bool) -> str:
    """Grammar over the opening of an assistant turn: `message:` or `functions.<name>:`."""
    if not tool_names:
        raise ValueError("a decision needs at least one tool to choose from")
    calls = " | ".join(gbnf_literal(f"{CALL_PREFIX}{name}:") for name in tool_names)
    root = f"{gbnf_literal(_MESSAGE_MARK)} | call" if allow_text else "call"
    return f"root ::= {root}\ncall ::= {calls}\n"


def parse_decision(text: str, tool_names: Sequence[str]) -> str | None:
    """The tool a decision names, or None for a text answer; ValueError if it is neither."""
    if text == _MESSAGE_MARK:
        return None
    for name in tool_names:
        if text == f"{CALL_PREFIX}{name}:":
            return name
    raise ValueError(f"unexpected decision {text!r}")


def strict_schema(schema: Any) -> Any:
    """A copy of `schema` whose objects with listed properties allow no others.

    Every value valid under the result is valid under `schema`; the grammar built from it
    just stops a small model from inventing extra keys the tool would reject.
    """
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    out = {key: strict_schema(value) for key, value in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def schema_grammar(schema: Mapping[str, Any], *, what: str) -> str:
    """GBNF accepting exactly the JSON texts valid under `schema` (llama.cpp's converter).

    `what` names the schema's owner in the error raised when the converter cannot handle it.
    """
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        grammar = str(json_schema_to_gbnf(json.dumps(strict_schema(schema))))
    except (AssertionError, KeyError, TypeError, ValueError, RecursionError) as exc:
        # The converter signals unsupported schemas with bare asserts and lookups.
        raise BadRequestError(
            f"the local model cannot constrain output to the JSON schema of {what} "
            f"({type(exc).__name__}: {exc}); simplify the schema"
        ) from exc
    return _json_safe_chars(grammar)


_JSON_STRING_CHAR = r'[^"\\\x7F\x00-\x1F]'
_LOOSE_RULES = {
    "char ::= ": r'[^"\\]',
    "dot ::= ": r"[^\x0A\x0D]",
}


def _json_safe_chars(grammar: str) -> str:
    """Keep string characters JSON-legal: no raw control characters, quotes or backslashes.

    llama-cpp-python's converter lets a string character be anything but a quote or a
    backslash (and a pattern's `.` anything but a line break), so a raw newline or quote
    could land inside a string and the text would not parse as JSON.
    """
    lines = grammar.split("\n")
    for i, line in enumerate(lines):
        for head, loose in _LOOSE_RULES.items():
            if line.startswith(head + loose):
                lines[i] = head + _JSON_STRING_CHAR + line[len(head + loose) :]
    return "\n".join(lines)


def response_format_grammar(response_format: Mapping[str, Any] | None) -> str | None:
    """Grammar for an OpenAI `response_format` (json_object / json_schema), else None."""
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        from llama_cpp.llama_grammar import JSON_GBNF

        return str(JSON_GBNF)
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema")
        if not isinstance(schema, Mapping):
            raise BadRequestError("response_format json_schema needs a 'schema' object")
        return schema_grammar(schema, what=f"response format {spec.get('name', '')!r}")
    if kind == "text":
        return None
    raise BadRequestError(
        f"response_format type {kind!r} is not supported; use text, json_object or json_schema"
    )
