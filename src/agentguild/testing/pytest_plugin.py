"""pytest fixtures for testing code that talks to an LLM (registered as a pytest11 plugin).

- `fake_llm`: a started in-process `FakeLLMServer` (echo mode unless configured);
- `fake_llm_model`: an `OpenAICompatModel` pointed at `fake_llm`.

Configure the server per test with the `fake_llm` marker, whose arguments go to
`FakeLLMServer`:

```python
@pytest.mark.fake_llm(Reply("Hello!"), mode="tool-loop", latency=0.01)
async def test_greets(fake_llm_model): ...
```
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..llm.openai_compat import OpenAICompatModel
    from .server import FakeLLMServer


def _async_fixture(function: Callable[..., Any]) -> Any:
    """`pytest_asyncio.fixture` when pytest-asyncio is installed (works in its strict
    mode too), else a plain fixture for other async plugins to run."""
    try:
        import pytest_asyncio
    except ImportError:
        return pytest.fixture(function)
    return pytest_asyncio.fixture(function)


def pytest_configure(config: pytest.Config) -> None:
    """Register the `fake_llm` marker."""
    config.addinivalue_line(
        "markers",
        "fake_llm(*script, **options): configure the fake_llm fixture's FakeLLMServer "
        "(scripted replies/failures, mode=, latency=, responder=, ...)",
    )


@_async_fixture
async def fake_llm(request: pytest.FixtureRequest) -> AsyncIterator[FakeLLMServer]:
    """A started in-process fake OpenAI-compatible LLM server; closed after the test."""
    from .server import FakeLLMServer

    marker = request.node.get_closest_marker("fake_llm")
    args: tuple[Any, ...] = marker.args if marker else ()
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker else {}
    async with FakeLLMServer(*args, **kwargs) as server:
        yield server


@_async_fixture
async def fake_llm_model(fake_llm: FakeLLMServer) -> AsyncIterator[OpenAICompatModel]:
    """An `OpenAICompatModel` talking to the `fake_llm` server; closed after the test."""
    from ..llm.openai_compat import OpenAICompatModel

    model = OpenAICompatModel("fake-model", base_url=fake_llm.base_url, api_key="test-key")
    try:
        yield model
    finally:
        await model.aclose()
