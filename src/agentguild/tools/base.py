"""Tools: typed Python functions a model can call, with JSON schemas from their signatures."""

from __future__ import annotations

import asyncio
import inspect
import re
import types
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, get_type_hints, overload

import orjson
import pydantic

from ..errors import ToolError
from ..types import JSONObject, ToolSpec

_ARGS_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$", re.MULTILINE)
_ARG_LINE = re.compile(r"^\s{2,}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)$")


class Tool:
    """A function the model can call.

    Build one with the `@tool` decorator. The model sees `spec` (name, description, JSON
    schema of the parameters); `invoke` validates the model's JSON arguments with pydantic
    and calls the function: async functions on the event loop, sync ones in a worker thread.
    """

    __slots__ = ("_arg_names", "_args_model", "_fn", "_is_async", "idempotent", "spec", "timeout_s")

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float | None = None,
        idempotent: bool = False,
    ) -> None:
        self._fn = fn
        self._is_async = inspect.iscoroutinefunction(fn)
        self.timeout_s = timeout_s
        """Per-call time limit; None uses the executor's default."""
        self.idempotent = idempotent
        """Whether calling twice with the same arguments is safe (retries, resumed runs)."""
        tool_name = name or fn.__name__
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", tool_name):
            raise ToolError(
                f"tool name {tool_name!r} is invalid: use 1-64 letters, digits, '_' or '-'"
            )
        summary, arg_docs = _parse_docstring(inspect.getdoc(fn) or "")
        self._args_model = _arguments_model(fn, tool_name, arg_docs)
        self._arg_names = tuple(self._args_model.model_fields)
        self.spec = ToolSpec(
            tool_name, description or summary or tool_name, _schema(self._args_model)
        )

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"Tool({self.spec.name!r})"

    async def __call__(self, **kwargs: Any) -> Any:
        """Call the underlying function directly (no validation); handy in tests."""
        return await self._call(kwargs)

    async def invoke(self, arguments: str | JSONObject) -> str:
        """Validate the model's arguments, call the function, return its result as text.

        Raises `pydantic.ValidationError` for arguments that don't fit the schema, and
        whatever the function raises.
        """
        if isinstance(arguments, str):
            parsed = self._args_model.model_validate_json(arguments or "{}")
        else:
            parsed = self._args_model.model_validate(arguments)
        kwargs = {arg: getattr(parsed, arg) for arg in self._arg_names}
        return result_text(await self._call(kwargs))

    async def _call(self, kwargs: dict[str, Any]) -> Any:
        if self._is_async:
            return await self._fn(**kwargs)
        return await asyncio.to_thread(self._fn, **kwargs)


def result_text(value: Any) -> str:
    """A tool's return value as the text the model reads."""
    if isinstance(value, str):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    idempotent: bool = False,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    idempotent: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a typed function (sync or async) into a `Tool`.

    The JSON schema comes from the type hints; the description from the docstring's first
    paragraph, and parameter descriptions from its `Args:` section::

        @tool
        def add(a: float, b: float) -> float:
            '''Add two numbers.

            Args:
                a: the first number
                b: the second number
            '''
            return a + b
    """

    def wrap(function: Callable[..., Any]) -> Tool:
        return Tool(
            function, name=name, description=description, timeout_s=timeout_s, idempotent=idempotent
        )

    return wrap(fn) if fn is not None else wrap


def as_tool(obj: Tool | Callable[..., Any] | Callable[..., Awaitable[Any]]) -> Tool:
    """A `Tool` for a tool or a plain function (edge convenience: `tools=[my_function]`)."""
    return obj if isinstance(obj, Tool) else Tool(obj)


class ToolRegistry:
    """Tools by name; the set of tools one agent offers."""

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for item in tools:
            self.register(item)

    def register(self, item: Tool | Callable[..., Any]) -> Tool:
        """Add a tool (or a function, wrapped as one); names must be unique."""
        new = as_tool(item)
        if new.name in self._tools:
            raise ToolError(f"a tool named {new.name!r} is already registered")
        self._tools[new.name] = new
        return new

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(t.spec for t in self._tools.values())

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(summary, {arg: description}) from a Google-style docstring."""
    match = _ARGS_SECTION.search(doc)
    head = doc[: match.start()] if match else doc
    summary = head.strip().split("\n\n", 1)[0].replace("\n", " ").strip()
    arg_docs: dict[str, str] = {}
    if match:
        for line in doc[match.end() :].splitlines():
            if line.strip() and not line.startswith((" ", "\t")):
                break  # the next section
            arg = _ARG_LINE.match(line)
            if arg:
                arg_docs[arg.group(1)] = arg.group(2).strip()
    return summary, arg_docs


def _arguments_model(
    fn: Callable[..., Any], tool_name: str, arg_docs: dict[str, str]
) -> type[pydantic.BaseModel]:
    try:
        hints = _parameter_hints(fn)
    except (NameError, TypeError) as exc:
        raise ToolError(f"tool {tool_name!r}: cannot resolve type hints: {exc}") from exc
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolError(f"tool {tool_name!r}: *args and **kwargs are not supported")
        if param.name not in hints:
            raise ToolError(f"tool {tool_name!r}: parameter {param.name!r} needs a type hint")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (
            hints[param.name],
            pydantic.Field(default, description=arg_docs.get(param.name)),
        )
    config = pydantic.ConfigDict(extra="forbid")
    return pydantic.create_model(f"{tool_name}_arguments", __config__=config, **fields)


def _parameter_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """Resolved parameter annotations (the return annotation may name anything)."""
    holder = types.SimpleNamespace(
        __annotations__={k: v for k, v in inspect.get_annotations(fn).items() if k != "return"}
    )
    localns = inspect.getclosurevars(fn).nonlocals if hasattr(fn, "__code__") else {}
    return get_type_hints(holder, globalns=getattr(fn, "__globals__", {}), localns=localns)


def _schema(model: type[pydantic.BaseModel]) -> JSONObject:
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema.setdefault("properties", {})
    return schema
