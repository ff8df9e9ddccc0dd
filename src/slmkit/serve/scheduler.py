"""The scheduler: one thread drives every request through one batched decode loop.

The loop is the generation engine's step-wise core (`slmkit.infer.engine.BatchGenerator`): each
`step()` admits waiting sequences into free cache rows (a prefill each), then decodes one token for
every running sequence in ONE forward pass, each sequence with its own sampling settings, random
generator and stop strings; finished sequences leave at once. That is continuous batching: requests
join and leave between decode steps, so a short request never waits for a long one.

This module adds what a server needs around that core: a thread that owns the engine (it is not
thread-safe), a bounded queue (`QueueFull` becomes HTTP 429), cancellation when a client goes away
(the sequence leaves the batch before the next step), draining for shutdown, recovery from a failed
step, and metrics. The HTTP side gets events through `Sequence.sink`, a thread-safe callback:
("delta", index, text), ("done", index, finish_reason, completion_tokens) or ("error", message); a
sequence that asks for log-probs also gets ("prompt_logprobs", index, [TokenLogprob]) once and
("logprob", index, TokenLogprob) per sampled token, each before that step's delta / done.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from slmkit.infer.engine import BatchGenerator
from slmkit.infer.runner import ModelRunner
from slmkit.infer.sampling import SamplingParams
from slmkit.serve.metrics import Metrics

log = logging.getLogger("slmkit.serve")


class QueueFull(Exception):
    """More sequences are waiting than --max-queue allows."""


class ShuttingDown(Exception):
    """The server is draining and takes no new work."""


@dataclass
class Sequence:
    """One choice of one request: the prompt to continue, its settings, and where its events go."""

    prompt_ids: list[int]
    params: SamplingParams
    index: int  # the choice index in the response
    sink: Callable[[tuple], None]
    adapter: object | None = None  # the served model (a RoutedAdapter) when the server routes adapters
    arrived: float = field(default_factory=time.perf_counter)
    id: str = ""
    completion_tokens: int = 0
    first_token_at: float | None = None
    done: bool = False

    def cancel(self) -> None:
        """Called from the HTTP side (any thread) when the client has gone away."""
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return getattr(self, "_cancelled", False)


class Scheduler:
    def __init__(self, model, tokenizer, eos_ids: set[int], max_batch: int, max_queue: int,
                 context_len: int, metrics: Metrics | None = None):
        self.tokenizer, self.eos_ids = tokenizer, eos_ids
        self.max_batch, self.max_queue = max_batch, max_queue
        self.runner = ModelRunner(model)
        self.engine = self._new_engine(context_len)
        self.context_len = self.engine.max_len  # the engine caps it at the model's window
        self.metrics = metrics or Metrics()
        self._inbox: list[Sequence] = []  # submitted, not yet handed to the engine
        self._active: dict[str, Sequence] = {}  # handed to the engine (waiting there or running)
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._closed = False  # refuse new work (draining)
        self._stop = False  # leave the loop
        self._thread = threading.Thread(target=self._loop, name="slm-scheduler", daemon=True)
        self.steps = 0

    def _new_engine(self, max_len: int) -> BatchGenerator:
        return BatchGenerator(self.runner.model, self.tokenizer, self.max_batch, max_len=max_len,
                              eos_ids=self.eos_ids, runner=self.runner)

    # ------------------------------------------------------------------ the HTTP side (any thread)

    def start(self) -> None:
        self._thread.start()

    def submit(self, sequences: list[Sequence]) -> None:
        """Queue a request's sequences together, all or none."""
        with self._cond:
            if self._closed:
                raise ShuttingDown("the server is shutting down and accepts no new requests")
            waiting = self.queue_depth()
            if waiting + len(sequences) > self.max_queue:
                raise QueueFull(f"the server is busy: {waiting} sequences are waiting (limit {self.max_queue}); "
                                "retry later")
            self._inbox.extend(sequences)
            self._cond.notify()

    def queue_depth(self) -> int:
        """Sequences submitted but not yet in the decode batch."""
        return len(self._inbox) + len(self.engine.waiting)

    def running_count(self) -> int:
        return len(self.engine.running)

    def wake(self) -> None:
        """Make the loop look at cancellations now (it also checks before every step)."""
        with self._cond:
            self._cond.notify()

    def close(self) -> None:
        """Refuse new work; what was submitted runs to its end."""
        with self._cond:
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the loop; sequences not finished by then get an error event."""
        with self._cond:
            self._closed = self._stop = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ the loop (scheduler thread)

    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self._cond:
                while not self._stop and not self._inbox and not self._active:
                    self._cond.wait()
                if self._stop:
                    break
                joining, self._inbox = self._inbox, []
            try:
                for seq in joining:
                    seq.id = f"seq-{next(self._ids)}"
                    self._active[seq.id] = seq
                    self.engine.add(seq.prompt_ids, seq.params, request_id=seq.id, adapter=seq.adapter)
                self._drop_cancelled()
                if self.engine.has_work():
                    self._step()
            except Exception:  # a failed step must not kill the server: fail what is in flight, go on
                log.exception("decode step failed; failing %d sequences", len(self._active))
                self._fail_active("generation failed (details are in the server log)")
                self.engine = self._new_engine(self.context_len)
        self._fail_active("the server shut down before this request finished", self._inbox)

    def _drop_cancelled(self) -> None:
        for seq in [s for s in self._active.values() if s.cancelled]:
            self.engine.cancel(seq.id)
            del self._active[seq.id]
            self.metrics.finished.inc(reason="cancelled")

    def _step(self) -> None:
        waiting_before = {r.request_id for r in self.engine.waiting}
        start = time.perf_counter()
        events = self.engine.step()
        now = time.perf_counter()
        self.steps += 1
        self.metrics.step_time.observe(now - start)
        self.metrics.batch_size.observe(len(self.engine.running) + sum(e.finish_reason is not None for e in events))
        admitted = waiting_before - {r.request_id for r in self.engine.waiting}
        for rid in admitted:
            seq = self._active.get(rid)
            if seq is not None:
                self.metrics.queue_wait.observe(start - seq.arrived)
                self.metrics.prompt_tokens.inc(len(seq.prompt_ids))
        for event in events:
            seq = self._active.get(event.request_id)
            if seq is None:
                continue
            if event.token_id is not None:
                seq.completion_tokens += 1
                self.metrics.generated_tokens.inc()
            if seq.first_token_at is None:
                seq.first_token_at = now
                self.metrics.ttft.observe(now - seq.arrived)
            if event.prompt_logprobs is not None:
                seq.sink(("prompt_logprobs", seq.index, event.prompt_logprobs))
            if event.logprob is not None:
                seq.sink(("logprob", seq.index, event.logprob))
            if event.delta:
                seq.sink(("delta", seq.index, event.delta))
            if event.finish_reason is not None:
                seq.done = True
                del self._active[seq.id]
                seq.sink(("done", seq.index, event.finish_reason, seq.completion_tokens))
                self.metrics.finished.inc(reason=event.finish_reason)
                self.metrics.completion_tokens.observe(seq.completion_tokens)

    def _fail_active(self, message: str, extra: list[Sequence] = ()) -> None:
        for seq in list(self._active.values()) + list(extra):
            if not seq.done:
                seq.done = True
                seq.sink(("error", message))
        self._active.clear()
