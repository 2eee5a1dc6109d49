"""Loading a GGUF file into a `llama_cpp.Llama`, working around llama.cpp's AMX crash.

On CPUs with AMX (Intel Sapphire Rapids and later, common in cloud VMs) llama.cpp repacks
weights into an AMX buffer, and on some of those machines the first batched decode then
segfaults in `ggml_backend_amx_mul_mat` (llama.cpp issue #20824, closed unfixed). A crash
kills the whole server, so on such CPUs we load with llama.cpp's "extra buffer types"
(AMX and weight repacking) switched off. Plain AVX-512 kernels do the work instead; for
the bundled Q4_1 model that costs nothing measurable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import ConfigError

_PATCH_LOCK = threading.Lock()


def cpu_has_amx() -> bool:
    """Whether this llama.cpp build will use AMX kernels on this CPU."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
    return "AMX_INT8 = 1" in text


def load_llama(path: Path, *, n_ctx: int, n_threads: int | None, seed: int) -> Any:
    """Load `path` as a `llama_cpp.Llama` (quietly); `ConfigError` if it cannot be loaded."""
    from llama_cpp import Llama

    def load() -> Any:
        return Llama(
            model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, seed=seed, verbose=False
        )

    try:
        if cpu_has_amx():
            with _without_extra_buffer_types():
                return load()
        return load()
    except ValueError as exc:  # llama-cpp-python's "Failed to load model from file"
        raise ConfigError(f"cannot load local model {str(path)!r}: {exc}") from exc


@contextmanager
def _without_extra_buffer_types() -> Iterator[None]:
    # Llama() offers no parameter for this; it builds its model params from
    # llama_model_default_params(), so we hand it defaults with the flag off, for the
    # duration of one load. Any other Llama loaded meanwhile only gets the safer default.
    import llama_cpp.llama_cpp as api

    original: Callable[[], Any] = api.llama_model_default_params

    def defaults() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    with _PATCH_LOCK:
        api.llama_model_default_params = defaults
        try:
            yield
        finally:
            api.llama_model_default_params = original
