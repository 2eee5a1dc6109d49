"""Structured JSON logs (structlog), one object a line, with secrets redacted.

`configure_logging()` sets structlog up once per process: ISO timestamps, the level, any
context bound with `structlog.contextvars` (the middleware binds `request_id`), and a
redaction step that masks credentials by key name (`authorization`, `password`, `token`,
`api_key`, `secret`, ...) and by shape (`agentguild.security.redact`: API keys, bearer
tokens, JWTs, private keys...) wherever they appear in an event. The standard library's
`logging` (uvicorn, SQLAlchemy) is routed through the same renderer.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import orjson
import structlog

from ..security import redact as redact_text

__all__ = ["REDACTED", "configure_logging", "redact", "redact_event"]

REDACTED = "***"

_SECRET_KEYS = re.compile(
    r"(authorization|password|passwd|secret|token|api[_-]?key|cookie|credential|private[_-]?key)",
    re.IGNORECASE,
)
_NOT_SECRET_KEYS = frozenset({"token_type", "prompt_tokens", "completion_tokens", "tokens"})


def redact(value: Any, key: str | None = None) -> Any:
    """`value` with credentials masked: by its key's name, or by shape inside strings."""
    if key is not None and key not in _NOT_SECRET_KEYS and _SECRET_KEYS.search(key):
        return REDACTED if value not in (None, "") else value
    if isinstance(value, str):
        return redact_text(value) if len(value) >= 8 else value
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def redact_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor applying `redact` to every field of the event."""
    for key, value in event_dict.items():
        event_dict[key] = redact(value, None if key == "event" else key)
    return event_dict


def configure_logging(level: str | int = "INFO", *, json: bool = True) -> None:
    """Log JSON lines (or readable console lines with `json=False`) to stderr at `level`.

    structlog events are rendered straight to bytes (orjson), without the standard
    library's machinery, so an access-log line costs microseconds; standard-library
    records (uvicorn, SQLAlchemy) go through the same processors and renderer.
    """
    if isinstance(level, str):
        level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_event,
    ]
    stream = sys.stderr
    if json:
        structlog.configure(
            processors=[
                *shared,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(serializer=orjson.dumps),
            ],
            logger_factory=structlog.BytesLoggerFactory(stream.buffer),
            wrapper_class=structlog.make_filtering_bound_logger(level),
            cache_logger_on_first_use=True,
        )
        renderer: structlog.types.Processor = structlog.processors.JSONRenderer(
            serializer=_dumps_text
        )
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
        structlog.configure(
            processors=[*shared, renderer],
            logger_factory=structlog.PrintLoggerFactory(stream),
            wrapper_class=structlog.make_filtering_bound_logger(level),
            cache_logger_on_first_use=True,
        )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            _drop_color_message,
            *shared,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers = []
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(logging.NOTSET)  # the root's level applies
    # Our middleware writes the access log, with request ids and without secrets.
    logging.getLogger("uvicorn.access").disabled = True


def _dumps_text(obj: Any, **kwargs: Any) -> str:
    return orjson.dumps(obj, **kwargs).decode()


def _drop_color_message(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate of `event`
    return event_dict
