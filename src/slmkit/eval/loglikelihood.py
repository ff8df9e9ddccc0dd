"""Log-likelihood requests: how likely a model finds a continuation after a context, with lm-eval's
definitions, computed through the model's own forward pass.

    scorer = LoglikelihoodScorer(model, tokenizer, batch_size=32)
    scorer.loglikelihood([("The cat sat on the", " mat"), ("The cat sat on the", " moon")])
    # -> [Scored(logprob=-2.1, is_greedy=True, tokens=1), Scored(logprob=-7.9, is_greedy=False, tokens=1)]
    scorer.loglikelihood_rolling(["A whole document ..."])   # -> [-123.4]: every token, windows of max_length
    scorer.rolling_totals(documents).bits_per_byte          # likelihood.py's definition

Tokenization is lm-eval's (`TemplateLM._encode_pair`): trailing spaces of the context move to the
continuation; context + continuation is encoded whole and split after the context's own token count, so a
merge across the boundary is the continuation's; an empty context is the prefix token (end-of-text). Inputs
longer than `max_length` keep their last `max_length` tokens (left truncation, as lm-eval does).

Speed: requests that share their context (the choices of one question) are laid out as the context once and
each choice after it, several questions packed to a row, with an attention mask that keeps every choice to
the context and itself (shared_context.py); the output head runs only where a continuation token is
predicted. A token's log-prob is the one a forward pass over context + continuation alone would give (tests
compare with lm-eval's `hf` model on the same weights).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from slmkit.errors import DataError
from slmkit.eval.likelihood import LikelihoodTotals, document_loglikelihoods
from slmkit.eval.shared_context import PackedBatch, Request, packed_batch, pack_segments, segments_of


ROW_WINDOWS = 2  # a segment (a context and its choices) may span up to this many windows of tokens
# On the CPU a forward pass holds at most this many tokens: the elementwise work (norms, SwiGLU, RoPE) is
# memory-bound and much slower once a pass's activations fall out of cache (measured in bench_eval: passes of
# 2048 tokens score HellaSwag 25-35 % faster than passes of 32 windows). GPUs take batch_size windows.
CPU_PASS_TOKENS = 2048


@dataclass(frozen=True)
class Scored:
    """One request's result: `logprob` (natural log, summed over the continuation's tokens), `is_greedy`
    (every continuation token is the model's argmax), `tokens` (continuation tokens scored)."""

    logprob: float
    is_greedy: bool
    tokens: int


class LoglikelihoodScorer:
    def __init__(self, model, tokenizer, max_length: int | None = None, batch_size: int = 32, device=None,
                 autocast=contextlib.nullcontext, prefix_id: int | None = None):
        """max_length: longest input in tokens (default and cap: the model's context window); batch_size:
        about this many windows of tokens per forward pass (on the CPU at most CPU_PASS_TOKENS tokens);
        autocast(): the context each forward pass runs in (e.g. bf16)."""
        self.model, self.tokenizer = model, tokenizer
        window = model.config.max_seq_len
        self.max_length = min(max_length or window, window)
        self.batch_size = max(1, batch_size)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.autocast = autocast
        self.pass_tokens = self.batch_size * self.max_length
        if self.device.type == "cpu":
            self.pass_tokens = min(self.pass_tokens, max(CPU_PASS_TOKENS, self.max_length))
        self.prefix_id = prefix_id if prefix_id is not None else tokenizer.eos_id
        if self.prefix_id is None:
            raise DataError("the tokenizer has no end-of-text token to condition an empty context on; "
                            "pass prefix_id")

    # ------------------------------------------------------------------------------------ text requests
    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context ids, continuation ids) as lm-eval's causal models tokenize them."""
        if context == "":
            ids = self.tokenizer.encode(continuation)
            return ([self.prefix_id], ids) if not ids or ids[0] != self.prefix_id else (ids[:1], ids[1:])
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self.tokenizer.encode(context + continuation)
        n_context = len(self.tokenizer.encode(context))
        return whole[:n_context], whole[n_context:]

    def loglikelihood(self, requests: Iterable[tuple[str, str]]) -> list[Scored]:
        """One `Scored` per (context, continuation) text pair, in order."""
        return self.score_tokens([self.encode_pair(c, x) for c, x in requests])

    def loglikelihood_rolling(self, texts: Iterable[str]) -> list[float]:
        """Each text's total log-likelihood: every token predicted once, in lm-eval's disjoint windows of
        `max_length` (the first conditioned on the prefix token); 0.0 for an empty text. The one
        implementation in likelihood.py (windows packed into rows), which the Trainer's validation uses too."""
        texts = list(texts)
        encoded = self.tokenizer.encode_batch(texts) if texts else []
        return self._document_loglikelihoods(encoded).tolist()

    def rolling_totals(self, texts: Iterable[str]) -> LikelihoodTotals:
        """Word/byte perplexity and bits per byte of `texts` as documents (likelihood.py's definition)."""
        texts = list(texts)
        encoded = self.tokenizer.encode_batch(texts) if texts else []
        totals = LikelihoodTotals()
        for text, ids, ll in zip(texts, encoded, self._document_loglikelihoods(encoded)):
            if ids:
                totals += LikelihoodTotals.of_document(text, float(ll), len(ids))
        return totals

    def _document_loglikelihoods(self, encoded: list[list[int]]):
        return document_loglikelihoods(self.model, encoded, self.prefix_id, self.max_length, self.batch_size,
                                       self.device, self.autocast)

    # ------------------------------------------------------------------------------------ token requests
    def score_tokens(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[Scored]:
        """One `Scored` per (context ids, continuation ids) pair, in order."""
        requests = [self._truncate(i, list(c), list(x)) for i, (c, x) in enumerate(pairs)]
        results: list[Scored | None] = [None] * len(requests)
        # A segment may be wider than the model's window: positions restart in each segment, so only each
        # request's own context + continuation must fit the window. A long shared context (few-shot prompts)
        # then carries all its choices in one row; rows are batched by a budget of tokens per pass.
        segments = segments_of(requests, ROW_WINDOWS * self.max_length)
        # Rows as wide as the longest segment: attention runs over the whole row, so wider rows cost more
        # per token than the padding they save.
        rows = pack_segments(segments, min(self.max_length, max((s.length for s in segments), default=1)))
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for batch_rows in _batches(rows, self.pass_tokens):
                    self._score_rows(packed_batch(batch_rows, self.device), results)
        finally:
            self.model.train(was_training)
        return results  # type: ignore[return-value]

    def _truncate(self, index: int, context: list[int], continuation: list[int]) -> Request:
        if not continuation:
            raise DataError(f"request {index}: the continuation is empty, so there is nothing to score")
        if len(continuation) > self.max_length:
            raise DataError(f"request {index}: the continuation has {len(continuation)} tokens, more than the "
                            f"{self.max_length}-token window; score it with loglikelihood_rolling instead")
        if not context:
            context = [self.prefix_id]
        keep = self.max_length + 1 - len(continuation)  # inputs are context + continuation minus its last token
        return Request(index, context[-keep:], continuation)

    def _score_rows(self, batch: PackedBatch, results: list) -> None:
        """One forward pass over packed rows; the output head only where a continuation token is predicted."""
        with self.autocast():
            hidden = self.model(batch.ids, positions=batch.positions, attention_mask=batch.mask,
                                hidden_only=True).hidden
            logits = self.model.logits(hidden[batch.predict_rows, batch.predict_cols])
        logprobs = logits.float().log_softmax(-1)
        target = torch.tensor([t for r in batch.requests for t in r.continuation], device=logprobs.device)
        picked = logprobs.gather(1, target[:, None]).squeeze(1).double()
        hit = logprobs.argmax(-1) == target
        sizes = [len(r.continuation) for r in batch.requests]
        for request, lp, h in zip(batch.requests, picked.split(sizes), hit.split(sizes)):
            results[request.index] = Scored(float(lp.sum()), bool(h.all()), len(request.continuation))


def _batches(rows: list[list], budget: int):
    """Consecutive rows (widest first, as pack_segments makes them) whose padded size stays within `budget`
    tokens per forward pass (at least one row each)."""
    batch, widest = [], 0
    for row in rows:
        width = sum(seg.length for seg in row)
        if batch and (len(batch) + 1) * max(widest, width) > budget:
            yield batch
            batch, widest = [], 0
        batch.append(row)
        widest = max(widest, width)
    if batch:
        yield batch
