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

Speed: requests that share their context (the choices of one question) are grouped; the context is run
once into a KV cache, copied to one cache row per choice, and only the choices are run after it. Requests
with a context of their own run as one padded forward pass each batch. Either way a token's log-prob is
the same one forward pass over context + continuation would give (tests compare with transformers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from slmkit.errors import DataError
from slmkit.eval.likelihood import LikelihoodTotals, document_loglikelihoods
from slmkit.model.kv_cache import KVCache


@dataclass(frozen=True)
class Scored:
    """One request's result: `logprob` (natural log, summed over the continuation's tokens), `is_greedy`
    (every continuation token is the model's argmax), `tokens` (continuation tokens scored)."""

    logprob: float
    is_greedy: bool
    tokens: int


@dataclass
class _Pair:
    index: int  # position in the caller's request list
    context: list[int]
    continuation: list[int]


class LoglikelihoodScorer:
    def __init__(self, model, tokenizer, max_length: int | None = None, batch_size: int = 32, device=None,
                 autocast=contextlib.nullcontext, prefix_id: int | None = None):
        """max_length: longest input in tokens (default and cap: the model's context window); batch_size:
        sequences per forward pass; autocast(): the context each forward pass runs in (e.g. bf16)."""
        self.model, self.tokenizer = model, tokenizer
        window = model.config.max_seq_len
        self.max_length = min(max_length or window, window)
        self.batch_size = max(1, batch_size)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.autocast = autocast
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
        prepared = [self._truncate(i, list(c), list(x)) for i, (c, x) in enumerate(pairs)]
        results: list[Scored | None] = [None] * len(prepared)
        groups: dict[tuple[int, ...], list[_Pair]] = {}
        for pair in prepared:
            groups.setdefault(tuple(pair.context), []).append(pair)
        shared = [g for g in groups.values() if len(g) > 1]
        alone = [g[0] for g in groups.values() if len(g) == 1]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for batch in self._batches_of_groups(shared):
                    self._score_shared(batch, results)
                alone.sort(key=lambda p: -(len(p.context) + len(p.continuation)))
                for start in range(0, len(alone), self.batch_size):
                    self._score_alone(alone[start:start + self.batch_size], results)
        finally:
            self.model.train(was_training)
        return results  # type: ignore[return-value]

    def _truncate(self, index: int, context: list[int], continuation: list[int]) -> _Pair:
        if not continuation:
            raise DataError(f"request {index}: the continuation is empty, so there is nothing to score")
        if len(continuation) > self.max_length:
            raise DataError(f"request {index}: the continuation has {len(continuation)} tokens, more than the "
                            f"{self.max_length}-token window; score it with loglikelihood_rolling instead")
        if not context:
            context = [self.prefix_id]
        keep = self.max_length + 1 - len(continuation)  # inputs are context + continuation minus its last token
        return _Pair(index, context[-keep:], continuation)

    def _batches_of_groups(self, groups: list[list[_Pair]]):
        """Groups sorted longest first, packed so a batch holds about batch_size continuations and its
        longest context plus longest continuation fits the window (pad tokens get positions too)."""
        groups = sorted(groups, key=lambda g: -len(g[0].context))
        batch: list[list[_Pair]] = []
        rows, longest_cont = 0, 0
        for group in groups:
            cont = max(len(p.continuation) for p in group)
            fits = len(batch[0][0].context) + max(longest_cont, cont) - 1 <= self.max_length if batch else True
            if batch and (rows + len(group) > self.batch_size or not fits):
                yield batch
                batch, rows, longest_cont = [], 0, 0
            batch.append(group)
            rows += len(group)
            longest_cont = max(longest_cont, cont)
        if batch:
            yield batch

    def _score_shared(self, groups: list[list[_Pair]], results: list) -> None:
        """Contexts once into a KV cache (right-padded, then each row cut back to its length), copied to
        one row per continuation; then all continuations in one forward pass. The output head runs only
        where a continuation token is predicted."""
        contexts = [g[0].context for g in groups]
        x, lengths = _right_padded(contexts, self.device)
        prefill = KVCache.for_model(self.model, rows=len(groups), max_len=x.shape[1])
        with self.autocast():
            hidden = self.model(x, cache=prefill, hidden_only=True).hidden
        last = hidden[torch.arange(len(groups)), torch.tensor(lengths) - 1]  # [groups, d_model]
        pairs = [p for g in groups for p in g]
        owner = torch.tensor([gi for gi, g in enumerate(groups) for _ in g], device=self.device)
        inputs = [p.continuation[:-1] for p in pairs]
        n_new = max(len(i) for i in inputs)
        rest = None
        if n_new > 0:
            cache = KVCache.for_model(self.model, rows=len(pairs), max_len=x.shape[1] + n_new)
            cache.kv[:, :, :, :, :x.shape[1]] = prefill.kv[:, :, owner]
            cache.lengths = [lengths[int(o)] for o in owner]
            y, _ = _right_padded(inputs, self.device, min_len=n_new)
            with self.autocast():
                rest = self.model(y, cache=cache, hidden_only=True).hidden  # [pairs, n_new, d_model]
        states = []
        for r, pair in enumerate(pairs):
            states.append(last[owner[r]][None])
            if rest is not None and len(pair.continuation) > 1:
                states.append(rest[r, :len(pair.continuation) - 1])
        self._score_states(torch.cat(states), pairs, results)

    def _score_alone(self, pairs: list[_Pair], results: list) -> None:
        """Context + continuation minus its last token, right-padded, one causal forward pass."""
        inputs = [(p.context + p.continuation)[:-1] for p in pairs]
        x, _ = _right_padded(inputs, self.device)
        with self.autocast():
            hidden = self.model(x, hidden_only=True).hidden
        states = [hidden[r, len(p.context) - 1:len(p.context) - 1 + len(p.continuation)] for r, p in enumerate(pairs)]
        self._score_states(torch.cat(states), pairs, results)

    def _score_states(self, states: torch.Tensor, pairs: list[_Pair], results: list) -> None:
        """states [sum of continuation lengths, d_model]: the hidden state predicting each continuation token,
        pairs in order; one head matmul and log-softmax for them all."""
        with self.autocast():
            logits = self.model.head(states)
        logprobs = logits.float().log_softmax(-1)
        target = torch.tensor([t for p in pairs for t in p.continuation], device=logprobs.device)
        picked = logprobs.gather(1, target[:, None]).squeeze(1).double()
        hit = logprobs.argmax(-1) == target
        sizes = [len(p.continuation) for p in pairs]
        for pair, lp, h in zip(pairs, picked.split(sizes), hit.split(sizes)):
            results[pair.index] = Scored(float(lp.sum()), bool(h.all()), len(pair.continuation))


def _right_padded(rows: list[list[int]], device, min_len: int = 1) -> tuple[torch.Tensor, list[int]]:
    """[len(rows), longest] int64 with each row's ids first and 0 after; and each row's length. Padding
    at the end never changes a causal model's outputs at the real positions before it."""
    width = max(min_len, max(len(r) for r in rows))
    x = torch.zeros(len(rows), width, dtype=torch.int64)
    for i, r in enumerate(rows):
        x[i, :len(r)] = torch.tensor(r, dtype=torch.int64)
    return x.to(device), [len(r) for r in rows]
