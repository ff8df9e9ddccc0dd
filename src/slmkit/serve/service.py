"""`Service`: the served model behind the routes — loading, prompt building, limits, and running
requests through the scheduler (collected whole, or as a stream of events).

With adapters (`slm serve BASE --adapter NAME=DIR ...`) the server offers several model ids over one
base: the base's own and one per adapter. A request's "model" picks its adapter; requests for
different adapters share the decode batch (finetune/adapter_set.py routes each row), and each uses its
adapter's tokenizer, chat template and EOS.

Limits (each a 400 in OpenAI's error shape): a prompt that leaves no room in the context window,
max_tokens above the server's cap (--max-tokens), or prompt + max_tokens beyond the window (prompts are
never truncated). max_tokens 0 only with echo: the prompt is scored and nothing generated.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from slmkit.finetune.adapter_routing import BASE, RoutedAdapter
from slmkit.finetune.adapter_set import load_adapter_set
from slmkit.finetune.loading import load_for_use
from slmkit.infer.sampling import SamplingError, SamplingParams
from slmkit.tokenizer.chat_template import chat_stop_strings, render_chat
from slmkit.serve.errors import APIError
from slmkit.serve.json_mode import JsonObjectMask
from slmkit.serve.metrics import Metrics
from slmkit.serve.protocol import ChatCompletionRequest, CompletionRequest, SamplingFields
from slmkit.serve.scheduler import QueueFull, Scheduler, Sequence, ShuttingDown

# OpenAI's legacy completions default to 16 new tokens; chat defaults to "as many as fit" (capped here).
COMPLETION_DEFAULT_MAX_TOKENS = 16


@dataclass
class ServeConfig:
    model: str  # the model directory
    name: str | None = None  # the id clients send as "model" (default: the directory's name)
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_batch: int = 16  # sequences decoded together
    max_tokens: int = 512  # cap on max_tokens per request
    max_queue: int = 64  # sequences allowed to wait for a batch slot (more -> 429)
    max_context: int | None = None  # cache length per sequence (default: the model's context window)
    max_body_bytes: int = 1 << 20
    shutdown_timeout: float = 30.0  # seconds in-flight requests get to finish after SIGTERM
    dtype: str | None = None  # "float32" / "bfloat16" to cast the weights at load
    adapters: dict[str, str] = field(default_factory=dict)  # model id -> adapter directory, over `model`


class Service:
    def __init__(self, model, tokenizer, eos_ids: set[int], config: ServeConfig,
                 served: list[RoutedAdapter] | None = None):
        self.config = config
        self.model_name = config.name or Path(config.model).resolve().name  # the default model id
        self.tokenizer = tokenizer
        if served is None:  # one model: the base
            served = [RoutedAdapter(self.model_name, BASE, tokenizer, eos_ids, model.config.vocab_size)]
        self.models: dict[str, RoutedAdapter] = {s.name: s for s in served}
        self.created = int(time.time())
        self.metrics = Metrics(queue_depth=lambda: self.scheduler.queue_depth(),
                               running=lambda: self.scheduler.running_count())
        context = min(config.max_context or model.config.max_seq_len, model.config.max_seq_len)
        self.scheduler = Scheduler(model, tokenizer, eos_ids, config.max_batch, config.max_queue, context,
                                   self.metrics)
        self.context_len = self.scheduler.context_len
        self._json_masks: dict[str, JsonObjectMask] = {}  # JSON mode's token masks, per served model

    @classmethod
    def load(cls, config: ServeConfig) -> "Service":
        import torch

        dtype = getattr(torch, config.dtype) if config.dtype else None
        if config.adapters:
            name = config.name or Path(config.model).resolve().name
            model, served = load_adapter_set(config.model, config.adapters, dtype=dtype, base_name=name)
            return cls(model, served[0].tokenizer, served[0].eos_ids, config, served)
        model, tokenizer, eos_ids = load_for_use(config.model, dtype=dtype)  # adapter directories too
        return cls(model, tokenizer, eos_ids, config)

    def start(self) -> None:
        self.scheduler.start()

    @property
    def ready(self) -> bool:
        return self.scheduler.alive and not self.scheduler.closed

    # ------------------------------------------------------------------ building sequences

    def resolve(self, model_id: str | None) -> RoutedAdapter:
        """The served model a request names (none named: the base); 404 for an id this server lacks."""
        if model_id is None:
            return self.models[self.model_name]
        served = self.models.get(model_id)
        if served is None:
            raise APIError(404, f"the model '{model_id}' does not exist; this server serves "
                           f"{', '.join(repr(m) for m in self.models)}", param="model", code="model_not_found")
        return served

    def _encode(self, text: str, served: RoutedAdapter) -> list[int]:
        if served.tokenizer is None:
            raise APIError(400, "this model has no tokenizer; send the prompt as a list of token ids",
                           param="prompt")
        return served.tokenizer.encode(text, allowed_special="all")

    def completion_prompts(self, body: CompletionRequest, served: RoutedAdapter) -> list[list[int]]:
        prompts = []
        for k, p in enumerate(body.prompts()):
            if isinstance(p, str):
                prompts.append(self._encode(p, served))
            else:
                bad = [i for i in p if not 0 <= i < served.vocab_size]
                if bad:
                    which = f"prompt {k}: " if len(body.prompts()) > 1 else ""
                    raise APIError(400, f"{which}token id {bad[0]} is outside the vocabulary; ids must be in "
                                   f"[0, {served.vocab_size})", param="prompt")
                prompts.append(p)
        return prompts

    def chat_prompt(self, body: ChatCompletionRequest, served: RoutedAdapter) -> list[int]:
        if served.tokenizer is None:
            raise APIError(400, "this model has no tokenizer, so chat is not available")
        try:
            messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        except ValueError as e:
            raise APIError(400, str(e), param="messages") from None
        return self._encode(render_chat(served.tokenizer, messages, body.add_generation_prompt), served)

    def chat_stop(self, served: RoutedAdapter) -> list[str]:
        """Stop strings a chat needs beyond EOS (the transcript's next 'User:' turn without a template)."""
        return chat_stop_strings(served.tokenizer)

    def sampling_params(self, body: SamplingFields, prompts: list[list[int]], default_max: int | None,
                        served: RoutedAdapter, extra_stop: list[str] = ()) -> list[SamplingParams]:
        """One SamplingParams per prompt (max_new_tokens checked against the cap and the window)."""
        max_new = self._max_new_tokens(body, prompts, default_max)
        logprobs, prompt_logprobs = _logprob_settings(body)
        stop_ids = list(body.stop_token_ids or [])
        if any(not 0 <= i < served.vocab_size for i in stop_ids):
            raise APIError(400, f"stop_token_ids must be in [0, {served.vocab_size})", param="stop_token_ids")
        processors = [self._json_mask(body, served)] if body.json_mode else []
        try:
            return [SamplingParams(max_new_tokens=max_new, temperature=body.temperature, top_p=body.top_p,
                                   top_k=body.top_k, min_p=body.min_p, repetition_penalty=body.repetition_penalty,
                                   presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
                                   seed=body.seed, stop=list(body.stop or []) + list(extra_stop),
                                   stop_token_ids=stop_ids, ignore_eos=body.ignore_eos, logprobs=logprobs,
                                   prompt_logprobs=prompt_logprobs, logits_processors=processors) for _ in prompts]
        except SamplingError as e:
            raise APIError(400, str(e)) from None

    def _json_mask(self, body: SamplingFields, served: RoutedAdapter) -> JsonObjectMask:
        """JSON mode's token mask for the served model (built once per model: it reads the whole vocabulary)."""
        if served.tokenizer is None or not served.eos_ids:
            raise APIError(400, "JSON mode needs a tokenizer and an end-of-text token, which this model lacks",
                           param="response_format")
        if body.ignore_eos:
            raise APIError(400, "JSON mode ends at end-of-text once the object closes; drop ignore_eos",
                           param="ignore_eos")
        if served.name not in self._json_masks:
            self._json_masks[served.name] = JsonObjectMask(served.tokenizer, served.eos_ids)
        return self._json_masks[served.name]

    def _max_new_tokens(self, body: SamplingFields, prompts: list[list[int]], default_max: int | None) -> int:
        """The request's max_new_tokens, or a 400: above the cap, or prompt + completion beyond the window.

        Prompts are never truncated here (clients such as lm-eval truncate themselves and must know)."""
        if any(not p for p in prompts):
            raise APIError(400, "the prompt is empty", param="prompt")
        longest = max(range(len(prompts)), key=lambda k: len(prompts[k]))
        n_longest = len(prompts[longest])
        which = f"prompt {longest} " if len(prompts) > 1 else "the prompt "
        param = "messages" if isinstance(body, ChatCompletionRequest) else "prompt"
        room = self.context_len - n_longest
        if room < 1:
            raise APIError(400, f"this model's context window is {self.context_len} tokens, but {which}has "
                           f"{n_longest} tokens; shorten the prompt", param=param, code="context_length_exceeded")
        requested = body.requested_max_tokens
        if requested == 0 and not (isinstance(body, CompletionRequest) and body.echo):
            raise APIError(400, "max_tokens must be at least 1 (0 only with echo, to score the prompt)",
                           param="max_tokens")
        if requested is not None and requested > self.config.max_tokens:
            raise APIError(400, f"max_tokens is {requested}, above this server's limit of {self.config.max_tokens}",
                           param="max_tokens")
        if requested is not None and requested > room:
            raise APIError(400, f"this model's context window is {self.context_len} tokens; you asked for "
                           f"{n_longest + requested} ({which}has {n_longest}, {requested} in the completion); "
                           "lower max_tokens or shorten the prompt", param="max_tokens",
                           code="context_length_exceeded")
        if requested is not None:
            return requested
        return min(default_max or self.config.max_tokens, self.config.max_tokens, room)

    # ------------------------------------------------------------------ running

    def submit(self, prompts: list[list[int]], params: list[SamplingParams], n: int,
               served: RoutedAdapter | None = None) -> tuple[asyncio.Queue, list[Sequence]]:
        """Queue n choices per prompt; events arrive on the returned asyncio queue.

        Choice k of a seeded request samples with seed + k, so every choice differs and each is reproducible.
        """
        dispatcher = self._dispatcher()
        events: asyncio.Queue = asyncio.Queue()

        def sink(event: tuple) -> None:  # called from the scheduler thread
            dispatcher.put(events, event)

        sequences = []
        for i, (prompt, base) in enumerate(zip(prompts, params)):
            for k in range(n):
                choice = i * n + k
                p = base if base.seed is None or choice == 0 else _with_seed(base, base.seed + choice)
                sequences.append(Sequence(prompt, p, choice, sink, adapter=served))
        try:
            self.scheduler.submit(sequences)
        except QueueFull as e:
            raise APIError(429, str(e), code="queue_full") from None
        except ShuttingDown as e:
            raise APIError(503, str(e), code="shutting_down") from None
        return events, sequences

    def _dispatcher(self) -> "_Dispatcher":
        loop = asyncio.get_running_loop()
        if getattr(self, "_dispatch", None) is None or self._dispatch.loop is not loop:
            self._dispatch = _Dispatcher(loop)
        return self._dispatch

    def cancel(self, sequences: list[Sequence]) -> None:
        pending = [s for s in sequences if not s.done]
        for s in pending:
            s.cancel()
        if pending:
            self.scheduler.wake()


class _Dispatcher:
    """Hands events from the scheduler thread to the event loop, many per wake-up.

    One decode step yields an event per running sequence; waking the loop once for all of them
    (instead of once per event) keeps the HTTP side cheap when 32 streams share a step.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._items: list[tuple[asyncio.Queue, tuple]] = []
        self._lock = threading.Lock()
        self._scheduled = False

    def put(self, queue: asyncio.Queue, event: tuple) -> None:
        with self._lock:
            self._items.append((queue, event))
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def _drain(self) -> None:
        with self._lock:
            items, self._items = self._items, []
            self._scheduled = False
        for queue, event in items:
            queue.put_nowait(event)


def _logprob_settings(body: SamplingFields) -> tuple[int | None, int | None]:
    """(logprobs, prompt_logprobs) for the engine: top-N per generated token / per prompt token, None = off."""
    if isinstance(body, ChatCompletionRequest):
        return (body.top_logprobs or 0) if body.logprobs else None, None
    if not body.echo:
        return body.logprobs, None
    if body.logprobs is None:  # plain echo: the prompt text only; max_tokens 0 still runs the prefill
        return None, 0 if body.requested_max_tokens == 0 else None
    return body.logprobs, body.logprobs


def _with_seed(params: SamplingParams, seed: int) -> SamplingParams:
    from dataclasses import replace

    return replace(params, seed=seed)
