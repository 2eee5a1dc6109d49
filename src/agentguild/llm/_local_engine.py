"""The blocking half of `LocalModel`: one request run on a loaded `llama_cpp.Llama`.

Everything here runs on the model's worker thread, one request at a time (a llama.cpp
context is not thread-safe). Output leaves through an `emit` callback, and a
`threading.Event` checked between tokens stops generation when the consumer goes away.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequestError, ConfigError, ContextLengthError, ModelError
from ..types import Usage
from ._local_grammar import (
    decision_grammar,
    parse_decision,
    response_format_grammar,
    schema_grammar,
)
from ._local_prompt import (
    IM_END,
    IM_START,
    MESSAGE_PREFIX,
    Prompt,
    TurnPlan,
    call_header,
    plan_turn,
    render_prompt,
)
from ._local_stops import StopScanner
from .base import ChatChunk, ChatRequest, ToolCallDelta

Emit = Callable[[ChatChunk], None]

DEFAULT_TEMPERATURE = 0.2
DEFAULT_TOP_P = 0.9
"""SmolLM2-Instruct's recommended sampling (its model card)."""
_TOP_K = 40
_MIN_P = 0.05
_REPEAT_PENALTY = 1.1
"""For free text only: without it the 135M model soon repeats itself word for word."""
_TEXT_STOPS = (IM_END, IM_START, "<|endoftext|>")
_DECISION_MAX_TOKENS = 64


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampler settings for one request."""

    temperature: float
    top_p: float
    seed: int
    top_k: int = _TOP_K
    min_p: float = _MIN_P
    repeat_penalty: float = _REPEAT_PENALTY

    @classmethod
    def of(cls, request: ChatRequest, *, default_seed: int) -> Sampling:
        """The request's settings; `extra` may set top_k, min_p and repeat_penalty."""
        extra = request.extra
        try:
            return cls(
                temperature=DEFAULT_TEMPERATURE
                if request.temperature is None
                else float(request.temperature),
                top_p=DEFAULT_TOP_P if request.top_p is None else float(request.top_p),
                seed=default_seed if request.seed is None else int(request.seed),
                top_k=int(extra.get("top_k", _TOP_K)),
                min_p=float(extra.get("min_p", _MIN_P)),
                repeat_penalty=float(extra.get("repeat_penalty", _REPEAT_PENALTY)),
            )
        except (TypeError, ValueError) as exc:
            raise BadRequestError(f"invalid sampling parameter for the local model: {exc}") from exc

    def for_grammar(self) -> Sampling:
        """These settings without repetition penalty: JSON legitimately repeats itself."""
        return dataclasses.replace(self, repeat_penalty=1.0)


@dataclass(slots=True)
class _Run:
    """Bookkeeping of one generation pass."""

    tokens: int = 0
    finish_reason: str = "length"


class Engine:
    """Runs chat requests on one loaded Llama. Not thread-safe: one caller at a time."""

    def __init__(self, llama: Any, *, default_max_tokens: int, default_seed: int) -> None:
        import llama_cpp

        self._llama = llama
        self._n_ctx = int(llama.n_ctx())
        self._default_max_tokens = default_max_tokens
        self._default_seed = default_seed
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._is_eog: Callable[[Any, int], bool] = llama_cpp.llama_vocab_is_eog
        self._bos: list[int] = (
            [int(llama.token_bos())]
            if llama.metadata.get("tokenizer.ggml.add_bos_token") == "true"
            else []
        )
        self._markers = {marker: self._marker_id(marker) for marker in (IM_START, IM_END)}

    def _marker_id(self, marker: str) -> int:
        ids = self._llama.tokenize(marker.encode(), add_bos=False, special=True)
        if len(ids) != 1:
            raise ConfigError(
                f"the local model's vocabulary has no {marker} token; LocalModel needs a "
                "ChatML model such as the bundled SmolLM2-135M-Instruct"
            )
        return int(ids[0])

    def close(self) -> None:
        """Free the model's memory; the engine is unusable afterwards."""
        self._llama.close()

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` is (plain text, no special tokens)."""
        return len(self._llama.tokenize(text.encode(), add_bos=False, special=False))

    def tokenize(self, prompt: Prompt) -> list[int]:
        """The prompt's tokens; only template markers become special tokens."""
        ids = list(self._bos)
        for segment in prompt.segments:
            if segment.special:
                ids.append(self._markers[segment.text])
            else:
                ids.extend(self._llama.tokenize(segment.text.encode(), add_bos=False))
        return ids

    def run(self, request: ChatRequest, emit: Emit, cancelled: threading.Event) -> None:
        """Answer `request`, emitting chunks; the last one carries finish_reason and usage."""
        plan = plan_turn(request)
        prompt = render_prompt(request.messages, plan.rendered_tools)
        prompt_tokens = self.tokenize(prompt)
        max_tokens = self._budget(prompt_tokens, plan, request.max_tokens)
        sampling = Sampling.of(request, default_seed=self._default_seed)
        # Built up front, so an unusable schema fails whatever the model would choose.
        grammars = {
            t.name: schema_grammar(t.parameters, what=f"tool {t.name!r}") for t in plan.candidates
        }
        decision = _Run(finish_reason="stop")
        tool = self._decide(prompt_tokens, plan, sampling, decision, cancelled)
        if cancelled.is_set():
            return
        if tool is None:
            prefix = MESSAGE_PREFIX if plan.rendered_tools else ""
            run = self._answer(
                prompt.extend(prefix), request, sampling, max_tokens, emit, cancelled
            )
        else:
            run = self._call(
                prompt.extend(call_header(tool)),
                tool,
                grammars[tool],
                sampling,
                max_tokens,
                emit,
                cancelled,
            )
        if cancelled.is_set():
            return
        usage = Usage(len(prompt_tokens), decision.tokens + run.tokens)
        emit(ChatChunk(finish_reason=run.finish_reason, usage=usage))

    def _budget(self, prompt_tokens: list[int], plan: TurnPlan, requested: int | None) -> int:
        """The completion's token limit; `ContextLengthError` if it cannot fit."""
        if requested is not None and requested < 1:
            raise BadRequestError(f"max_tokens must be positive, got {requested}")
        headers = [MESSAGE_PREFIX, *(call_header(t.name) for t in plan.candidates)]
        # The reply's header (decision) is fed back as prompt; +2 for tokenizer slack.
        reserve = max(self.count_tokens(h) for h in headers) + 2
        room = self._n_ctx - len(prompt_tokens) - reserve
        if room < 1 or (requested is not None and requested > room):
            asked = f"max_tokens {requested}" if requested is not None else "at least 1 token"
            raise ContextLengthError(
                f"the prompt is {len(prompt_tokens)} tokens; with {asked} for the reply "
                f"(+{reserve} for its header) it exceeds the local model's context window "
                f"of {self._n_ctx} tokens; shorten the conversation, lower max_tokens, or "
                "create LocalModel with a larger n_ctx (SmolLM2 was trained on 8192)"
            )
        return requested if requested is not None else min(self._default_max_tokens, room)

    def _decide(
        self,
        prompt_tokens: list[int],
        plan: TurnPlan,
        sampling: Sampling,
        run: _Run,
        cancelled: threading.Event,
    ) -> str | None:
        """Pick the tool to call (or None: answer in text), by grammar-constrained sampling."""
        names = [t.name for t in plan.candidates]
        if not names:
            return None
        if len(names) == 1 and not plan.allow_text:
            return names[0]
        grammar = decision_grammar(names, allow_text=plan.allow_text)
        text = "".join(
            self._generate(
                prompt_tokens,
                sampling.for_grammar(),
                _DECISION_MAX_TOKENS,
                grammar,
                (),
                run,
                cancelled,
            )
        )
        if cancelled.is_set():
            return None
        try:
            return parse_decision(text, names)
        except ValueError as exc:
            raise ModelError(f"the local model did not finish choosing a tool: {exc}") from exc

    def _answer(
        self,
        prompt: Prompt,
        request: ChatRequest,
        sampling: Sampling,
        max_tokens: int,
        emit: Emit,
        cancelled: threading.Event,
    ) -> _Run:
        run = _Run()
        grammar = response_format_grammar(request.response_format)
        stops = (*_TEXT_STOPS, *(request.stop or ()))
        if grammar is not None:
            sampling = sampling.for_grammar()
        pieces = self._generate(
            self.tokenize(prompt), sampling, max_tokens, grammar, stops, run, cancelled
        )
        started = False
        for piece in pieces:
            text = piece if started else piece.lstrip()
            if text:
                started = True
                emit(ChatChunk(text=text))
        return run

    def _call(
        self,
        prompt: Prompt,
        tool: str,
        grammar: str,
        sampling: Sampling,
        max_tokens: int,
        emit: Emit,
        cancelled: threading.Event,
    ) -> _Run:
        emit(ChatChunk(tool_calls=(ToolCallDelta(0, f"call_{uuid.uuid4().hex[:24]}", tool),)))
        run = _Run()
        arguments: list[str] = []
        for piece in self._generate(
            self.tokenize(prompt), sampling.for_grammar(), max_tokens, grammar, (), run, cancelled
        ):
            arguments.append(piece)
            emit(ChatChunk(tool_calls=(ToolCallDelta(0, arguments=piece),)))
        if cancelled.is_set():
            return run
        text = "".join(arguments)
        if run.finish_reason != "stop":
            raise ModelError(
                f"the local model ran out of tokens (max_tokens={max_tokens}) while writing "
                f"the arguments of tool {tool!r}; raise max_tokens"
            )
        try:
            parsed = json.loads(text)
        except ValueError as exc:  # the grammar rules this out; never pass on bad JSON
            raise ModelError(f"tool {tool!r} arguments are not valid JSON: {text!r}") from exc
        if not isinstance(parsed, dict):
            raise ModelError(f"tool {tool!r} arguments are not a JSON object: {text!r}")
        run.finish_reason = "tool_calls"
        return run

    def _generate(
        self,
        tokens: list[int],
        sampling: Sampling,
        max_tokens: int,
        grammar_text: str | None,
        stops: Sequence[str],
        run: _Run,
        cancelled: threading.Event,
    ) -> Iterator[str]:
        """Sample up to `max_tokens` tokens, yielding text; stops at EOG or a stop string."""
        from llama_cpp.llama_grammar import LlamaGrammar

        grammar = LlamaGrammar.from_string(grammar_text) if grammar_text else None
        self._llama.set_seed(sampling.seed)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        scanner = StopScanner(stops)
        tokens_out = self._llama.generate(
            tokens,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
            grammar=grammar,
        )
        try:
            for token in tokens_out:
                if cancelled.is_set():
                    return
                if self._is_eog(self._vocab, token):
                    run.finish_reason = "stop"
                    break
                run.tokens += 1
                piece = self._llama.detokenize([token], special=True)
                text = scanner.feed(decoder.decode(piece))
                if text:
                    yield text
                if scanner.stopped:
                    run.finish_reason = "stop"
                    return
                if run.tokens >= max_tokens:
                    break
        finally:
            tokens_out.close()
        tail = scanner.feed(decoder.decode(b"", final=True)) + scanner.flush()
        if tail:
            yield tail
