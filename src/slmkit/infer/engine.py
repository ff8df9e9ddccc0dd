"""`BatchGenerator`: the step-wise generation core that batched generation, streaming and a server's
continuous batching all drive.

    engine = BatchGenerator(model, tokenizer, max_batch=8)
    engine.add([1, 2, 3], SamplingParams(temperature=0), request_id="a")
    while engine.has_work():
        for event in engine.step():           # one token per running request
            print(event.request_id, event.delta, event.finish_reason)

Each `step()` first admits waiting requests into free cache rows (a prefill per request; its first
token is sampled right away), then runs ONE batched decode forward for every running request, each
with its own sampling settings and random generator. Finished requests leave at once and their row
is reused, so requests can join and leave between steps.

Several adapters over one base (a model with an `adapter_route`, finetune/adapter_set.py): `add`
takes the request's `adapter` (its route index, tokenizer, EOS ids and vocabulary: a
`RoutedAdapter`), and every forward routes each row to its request's adapter, so requests for
different fine-tunes share a batch.

Log-probs (SamplingParams.logprobs / prompt_logprobs, infer/logprobs.py): a request that asks for them
gets each sampled token's raw log-prob on its event (also for a final EOS, which adds no text), and the
prompt's on its first event (its prefill then keeps every position's logits). max_new_tokens 0 with
prompt_logprobs scores the prompt and generates nothing (finish_reason "length").

Context policy: a prompt longer than the cache (the model's context window unless `max_len` is
smaller) raises `ContextLengthError`; generation that reaches the end of the window stops with
finish_reason "length".
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

import torch

from slmkit.errors import SlmError
from slmkit.infer.logprobs import TokenLogprob, prompt_logprobs, token_logprob
from slmkit.infer.runner import ModelRunner
from slmkit.infer.sampling import Sampler, SamplingParams
from slmkit.infer.text import TextStream
from slmkit.loading import eos_ids_for


class ContextLengthError(SlmError, ValueError):
    """A prompt does not fit the model's context window."""


@dataclass
class StepEvent:
    """One new token of one request (token_id None when a request ends without a new token)."""

    request_id: str
    token_id: int | None
    delta: str  # new text, UTF-8 safe, stop strings withheld
    finish_reason: str | None = None  # None while running; "stop" (EOS / stop string) or "length"
    logprob: TokenLogprob | None = None  # the sampled token's (EOS included), when the request asks
    prompt_logprobs: list[TokenLogprob] | None = None  # on a request's first event, when it asks


@dataclass
class Completion:
    request_id: str
    prompt_ids: list[int]
    token_ids: list[int]  # generated ids (EOS not included)
    text: str
    finish_reason: str


@dataclass
class _Running:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    sampler: Sampler
    stream: TextStream
    generated: list[int] = field(default_factory=list)
    text: str = ""
    next_token: int | None = None  # sampled but not yet in the cache
    finish_reason: str | None = None
    adapter: int = -1  # the route index of a model with several adapters (-1: the base)
    eos_ids: set[int] = field(default_factory=set)


class BatchGenerator:
    def __init__(self, model, tokenizer=None, max_batch: int = 8, max_len: int | None = None,
                 eos_ids: set[int] | None = None, runner: ModelRunner | None = None):
        self.runner = runner or ModelRunner(model)
        self.tokenizer = tokenizer
        self.eos_ids = set(eos_ids) if eos_ids is not None else eos_ids_for(tokenizer)
        self.cache = self.runner.new_cache(max_batch, max_len)
        self.max_batch = max_batch
        self.waiting: deque[_Running] = deque()
        self.running: list[_Running] = []  # running[i] owns cache row i
        self._ids = itertools.count()

    @property
    def max_len(self) -> int:
        return self.cache.max_len

    def add(self, prompt_ids: list[int], params: SamplingParams | None = None, request_id: str | None = None,
            adapter=None) -> str:
        """Queue a request; it starts at the next `step()` with a free row. Returns its id.

        adapter: for a model with several adapters, the one this request runs (anything with `index`,
        `tokenizer`, `eos_ids` and `vocab_size`: finetune.adapter_routing.RoutedAdapter); None: the base."""
        params = params or SamplingParams()
        prompt_ids = [int(i) for i in prompt_ids]
        if not prompt_ids:
            raise ContextLengthError("the prompt is empty; give at least one token")
        if len(prompt_ids) >= self.max_len:
            raise ContextLengthError(
                f"the prompt has {len(prompt_ids)} tokens but the context window is {self.max_len} tokens "
                "(including room for one new token); shorten the prompt")
        vocab = adapter.vocab_size if adapter is not None else self.runner.config.vocab_size
        if min(prompt_ids) < 0 or max(prompt_ids) >= vocab:
            raise SlmError(f"prompt token id {max(prompt_ids)} is outside the model's vocabulary ({vocab})")
        request_id = request_id if request_id is not None else f"req-{next(self._ids)}"
        tokenizer = adapter.tokenizer if adapter is not None else self.tokenizer
        self.waiting.append(_Running(request_id, prompt_ids, params, Sampler(params), TextStream(tokenizer, params.stop),
                                     adapter=adapter.index if adapter is not None else -1,
                                     eos_ids=set(adapter.eos_ids) if adapter is not None else self.eos_ids))
        return request_id

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def cancel(self, request_id: str) -> None:
        """Drop a request, waiting or running (a server calls this when a client disconnects)."""
        self.waiting = deque(r for r in self.waiting if r.request_id != request_id)
        for row, r in enumerate(self.running):
            if r.request_id == request_id:
                self._release(row)
                return

    def step(self) -> list[StepEvent]:
        """Admit waiting requests, then decode one token for every running request."""
        events: list[StepEvent] = []
        while self.waiting and len(self.running) < self.max_batch:
            self._admit(self.waiting.popleft(), events)
        self._sweep()
        if self.running:
            n = len(self.running)
            if n == 1:  # the runner's one-token path (no id tensor to build)
                logits = self.runner.decode(self.running[0].next_token, self.cache, 0, self.running[0].adapter)
            else:
                ids = torch.tensor([[r.next_token] for r in self.running], device=self.runner.device)
                logits = self.runner.forward(ids, self.cache, adapters=[r.adapter for r in self.running])
            if all(r.params.greedy and not r.sampler.processors for r in self.running):
                tokens = logits.argmax(-1).tolist()
            else:
                tokens = [self._sample(r, logits[i]) for i, r in enumerate(self.running)]
            for row in range(n):
                event = self._accept(row, tokens[row], events)
                self._attach_logprob(event, self.running[row], logits[row], tokens[row])
            self._sweep()
        return events

    def _admit(self, request: _Running, events: list[StepEvent]) -> None:
        """Prefill a waiting request into the next free row and sample its first token."""
        row = len(self.running)
        self.cache.set_length(row, 0)
        self.running.append(request)
        k_prompt = request.params.prompt_logprobs
        logits = self.runner.forward(torch.tensor([request.prompt_ids], device=self.runner.device),
                                     self.cache, row0=row, all_logits=k_prompt is not None, adapters=[request.adapter])
        scored = None
        if k_prompt is not None:  # logits [1, T, vocab]: every prompt position
            scored = prompt_logprobs(logits[0], request.prompt_ids, k_prompt)
            logits = logits[:, -1]
        if request.params.max_new_tokens == 0:  # scoring only
            self._finish(request, None, "length", events)
        else:
            token = self._sample(request, logits[0])
            self._attach_logprob(self._accept(row, token, events), request, logits[0], token)
        events[-1].prompt_logprobs = scored

    def _attach_logprob(self, event: StepEvent, request: _Running, logits: torch.Tensor, token: int) -> None:
        if request.params.logprobs is not None:
            event.logprob = token_logprob(logits, token, request.params.logprobs)

    # ----------------------------------------------------------------------------------------- internals

    def _sample(self, request: _Running, logits: torch.Tensor) -> int:
        return request.sampler.sample(logits, request.prompt_ids, request.generated)

    def _accept(self, row: int, token: int, events: list[StepEvent]) -> StepEvent:
        """Record a sampled token for the request in `row`; mark it finished (next_token None) if done.
        Returns the event it appended."""
        request = self.running[row]
        params = request.params
        if token in request.eos_ids and not params.ignore_eos or token in params.stop_token_ids:
            return self._finish(request, None, "stop", events)
        request.generated.append(token)
        delta = request.stream.push(token)
        if request.stream.stopped:
            return self._finish(request, token, "stop", events, delta)
        if len(request.generated) >= params.max_new_tokens or self.cache.lengths[row] + 1 >= self.max_len:
            return self._finish(request, token, "length", events, delta)
        request.next_token = token
        request.text += delta
        events.append(StepEvent(request.request_id, token, delta))
        return events[-1]

    def _finish(self, request: _Running, token, reason: str, events: list[StepEvent], delta: str = "") -> StepEvent:
        delta += request.stream.finish()
        request.text += delta
        request.next_token = None
        request.finish_reason = reason
        events.append(StepEvent(request.request_id, token, delta, reason))
        return events[-1]

    def _sweep(self) -> None:
        """Release rows whose request finished, keeping running rows packed at the front."""
        row = 0
        while row < len(self.running):
            if self.running[row].next_token is None:
                self._release(row)
            else:
                row += 1

    def _release(self, row: int) -> None:
        last = len(self.running) - 1
        if row != last:
            self.cache.move_row(last, row)
            self.running[row] = self.running[last]
        self.running.pop()
        self.cache.set_length(last, 0)
