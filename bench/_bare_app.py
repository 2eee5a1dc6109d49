"""The baseline of `server_load.py`: a bare FastAPI endpoint shaped like `/v1/chat/completions`.

One POST route validating a pydantic body like a chat request and answering a small JSON
object; no authentication, rate limiting, agent or model. What FastAPI + uvicorn alone
serve on this machine, measured in the same run as agentguild.

    uvicorn --factory bench._bare_app:create_app   # or uvicorn bench._bare_app:app
"""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class ChatBody(BaseModel):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1, max_length=500)
    temperature: float | None = None


class ChatAnswer(BaseModel):
    id: str
    object: str
    model: str
    content: str


def create_app() -> FastAPI:
    """The bare application: `POST /v1/chat/completions` echoing the last message."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatBody) -> ChatAnswer:
        return ChatAnswer(
            id="bare", object="chat.completion", model=body.model, content=body.messages[-1].content
        )

    return app


app = create_app()
