"""The HTTP server: FastAPI app factory, routers, middleware.

`create_app(settings)` builds the ASGI application; run it with uvicorn
(`agentguild serve`). Imported lazily so that routers can import `server.deps` and
`server.errors` without building the whole app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
