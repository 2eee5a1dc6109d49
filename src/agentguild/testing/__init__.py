"""Test kit: a fake OpenAI-compatible LLM server, scripted replies and failures, fixtures.

```python
from agentguild.testing import ErrorReply, FakeLLMServer, Reply

async with FakeLLMServer(ErrorReply.rate_limited(1), Reply("Hello!")) as server:
    ...  # point any OpenAI-compatible client at server.base_url
```

With pytest, the `fake_llm` and `fake_llm_model` fixtures are available automatically
(see `agentguild.testing.pytest_plugin`).
"""

from .process import start_fake_server_process
from .replies import (
    DropConnection,
    ErrorReply,
    FakeToolCall,
    Hang,
    MalformedReply,
    Reply,
    Responder,
    ScriptItem,
)
from .responders import Mode, echo_responder, tool_loop_responder
from .server import FakeLLMServer, FakeServerError

__all__ = [
    "DropConnection",
    "ErrorReply",
    "FakeLLMServer",
    "FakeServerError",
    "FakeToolCall",
    "Hang",
    "MalformedReply",
    "Mode",
    "Reply",
    "Responder",
    "ScriptItem",
    "echo_responder",
    "start_fake_server_process",
    "tool_loop_responder",
]
