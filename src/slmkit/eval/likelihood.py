"""Loss, perplexity and bits per byte of held-out text: the one definition, used by the Trainer's validation,
`slm eval`, `slm quantize`'s report, lm-eval's `loglikelihood_rolling` through slmkit, and the benchmarks.

The definition is lm-eval's (`loglikelihood_rolling` + the wikitext metrics):

- **Documents.** Each document is scored alone, conditioned on the end-of-text token as its prefix. A prepared
  split's documents are its token stream cut at end-of-text.
- **Windows.** Every token of a document is predicted exactly once, in rolling windows of `seq_len`
  (data/rolling_windows.py); windows are packed several to a row with document ids, which computes exactly
  what one forward pass per window would. The end-of-text after a document is not a target.
- **Totals.** nats = sum of -ln p(token | its window's earlier tokens); tokens = targets; bytes = the UTF-8
  bytes the targets spell (special tokens 0), which for a byte-level tokenizer is each document's UTF-8
  length; words = pieces of re.split(r"\\s+", document) when the text is known.
- loss = nats / tokens, perplexity = exp(loss), bits per byte = nats / ln 2 / bytes, word perplexity =
  exp(nats / words), byte perplexity = exp(nats / bytes), summed over the corpus before dividing (lm-eval's
  weighted aggregation, not a mean of per-document values). Bits per byte divides by the text's length, not
  by the tokenizer's pieces, so models with different vocabularies compare on it.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from slmkit.data.rolling_windows import batches_of_rows, pack_windows
from slmkit.errors import DataError, TokenizerError
from slmkit.model.loss import IGNORE_INDEX

Autocast = Callable[[], contextlib.AbstractContextManager]  # makes the context each forward pass runs in


def word_count(document: str) -> int:
    """lm-eval's word count: pieces of re.split(r"\\s+", doc) (leading/trailing whitespace counts a piece)."""
    return len(re.split(r"\s+", document))


@dataclass(frozen=True)
class LikelihoodTotals:
    """Sums over scored targets: `nats`, `tokens`, `bytes` (0 when no tokenizer was given), and when the
    documents' text is known `words` and `documents`. Totals from batches, documents or ranks add with `+`."""

    nats: float = 0.0
    tokens: int = 0
    bytes: int = 0
    words: int = 0
    documents: int = 0

    def __add__(self, other: LikelihoodTotals) -> LikelihoodTotals:
        return LikelihoodTotals(self.nats + other.nats, self.tokens + other.tokens, self.bytes + other.bytes,
                                self.words + other.words, self.documents + other.documents)

    @classmethod
    def of_document(cls, text: str, loglikelihood: float, tokens: int) -> LikelihoodTotals:
        """One document's totals from its text and summed log-likelihood (negative nats)."""
        return cls(-loglikelihood, tokens, len(text.encode("utf-8")), word_count(text), 1)

    @property
    def loss(self) -> float:
        """Mean nats per target token."""
        return self.nats / self._need(self.tokens, "tokens")

    @property
    def perplexity(self) -> float:
        return _safe_exp(self.loss)

    @property
    def bits_per_byte(self) -> float | None:
        """nats / ln 2 / bytes; None when no bytes were counted (scored without a tokenizer)."""
        return self.nats / math.log(2) / self.bytes if self.bytes > 0 else None

    @property
    def word_perplexity(self) -> float:
        return _safe_exp(self.nats / self._need(self.words, "words"))

    @property
    def byte_perplexity(self) -> float:
        return _safe_exp(self.nats / self._need(self.bytes, "bytes"))

    def metrics(self) -> dict[str, float]:
        """bits_per_byte, token/byte/word perplexities (those that were counted)."""
        out = {"token_perplexity": self.perplexity} if self.tokens else {}
        if self.bytes:
            out.update(bits_per_byte=self.bits_per_byte, byte_perplexity=self.byte_perplexity)
        if self.words:
            out["word_perplexity"] = self.word_perplexity
        return out

    @staticmethod
    def _need(amount: int, what: str) -> int:
        if amount <= 0:
            raise DataError(f"no {what} were scored: the text is empty")
        return amount


def _safe_exp(x: float) -> float:
    return math.exp(x) if x < 700 else math.inf


def token_byte_lengths(tokenizer, vocab_size: int | None = None) -> torch.Tensor:
    """[vocab_size] int64: the UTF-8 bytes each id decodes to; 0 for special tokens and ids the tokenizer
    does not use (a model's vocabulary may be padded beyond the tokenizer's)."""
    size = tokenizer.vocab_size if vocab_size is None else vocab_size
    lengths = torch.zeros(size, dtype=torch.int64)
    specials = set(tokenizer.special_tokens.values())
    for i, piece in tokenizer.vocab.items():
        if i < size and i not in specials:
            lengths[i] = len(piece)
    return lengths


def target_nats(model, x: torch.Tensor, y: torch.Tensor, document_ids: torch.Tensor | None = None) -> torch.Tensor:
    """[batch, seq] float32: -ln p(y | the row's earlier tokens of the same window), 0 where y == -100.
    x, y, document_ids: [batch, seq] int64 on the model's device."""
    logits = model(x, document_ids=document_ids).logits if document_ids is not None else model(x).logits
    nats = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
    return nats.view(y.shape)


def score_batch(model, x, y, document_ids=None, byte_lengths: torch.Tensor | None = None) -> LikelihoodTotals:
    """Totals of one batch (EvalBatches' (x, y, document_ids), or windows without document ids)."""
    nats = target_nats(model, x, y, document_ids)
    scored = y[y != IGNORE_INDEX]
    nbytes = int(byte_lengths.to(y.device)[scored].sum()) if byte_lengths is not None else 0
    return LikelihoodTotals(float(nats.double().sum()), int(scored.numel()), nbytes)


@torch.no_grad()
def score_batches(model, batches: Iterable[tuple], byte_lengths: torch.Tensor | None = None, device=None,
                  autocast: Autocast = contextlib.nullcontext) -> LikelihoodTotals:
    """Sum `score_batch` over batches of (x, y[, document_ids]), in eval mode (restored after).
    `autocast()` wraps each forward pass (e.g. bf16 autocast, as in training)."""
    device = _model_device(model) if device is None else torch.device(device)
    was_training = model.training
    model.eval()
    totals = LikelihoodTotals()
    try:
        for batch in batches:
            x, y, *rest = (t.to(device) for t in batch)
            with autocast():
                totals += score_batch(model, x, y, rest[0] if rest else None, byte_lengths)
    finally:
        model.train(was_training)
    return totals


@torch.no_grad()
def document_loglikelihoods(model, documents: Sequence[Sequence[int]], prefix_id: int, seq_len: int,
                            batch_size: int = 8, device=None,
                            autocast: Autocast = contextlib.nullcontext) -> np.ndarray:
    """[documents] float64: each token-id document's log-likelihood (negative nats), as defined above."""
    device = _model_device(model) if device is None else torch.device(device)
    fulls = [np.asarray([prefix_id, *d], dtype=np.int64) for d in documents]
    rows = pack_windows([len(d) for d in documents], seq_len)
    owners = [[w.document for w in row] for row in rows]
    out = np.zeros(len(documents))
    was_training = model.training
    model.eval()
    try:
        for first, (x, y, ids) in zip(range(0, len(rows), batch_size),
                                      batches_of_rows(rows, fulls.__getitem__, seq_len, batch_size)):
            x, y, ids = (torch.from_numpy(a).to(device) for a in (x, y, ids))
            with autocast():
                nats = target_nats(model, x, y, ids).double()
            per_window = torch.zeros(x.shape[0], int(ids.max()) + 1, dtype=torch.float64, device=device)
            per_window.scatter_add_(1, ids.clamp(min=0), nats)  # padding (-1 -> 0) adds nats of 0
            for r, row_owners in enumerate(owners[first:first + x.shape[0]]):
                for k, d in enumerate(row_owners):
                    out[d] -= float(per_window[r, k])
    finally:
        model.train(was_training)
    return out


def document_stream(tokenizer, documents: Iterable[str], max_tokens: int | None = None) -> list[int]:
    """How `slm prepare` lays documents into a split: each encoded on its own and followed by end-of-text,
    concatenated; cut to its first `max_tokens` tokens when given."""
    eos = _eos(tokenizer)
    stream: list[int] = []
    for ids in tokenizer.encode_batch(list(documents)):
        stream.extend(ids)
        stream.append(eos)
    return stream if max_tokens is None else stream[:max_tokens]


def score_documents(model, tokenizer, documents: Iterable[str], seq_len: int, batch_size: int = 8, device=None,
                    autocast: Autocast = contextlib.nullcontext) -> LikelihoodTotals:
    """Loss, perplexities and bits per byte of `documents` (strings) as defined above."""
    texts = list(documents)
    encoded = tokenizer.encode_batch(texts) if texts else []
    lls = document_loglikelihoods(model, encoded, _eos(tokenizer), seq_len, batch_size, device, autocast)
    totals = LikelihoodTotals()
    for text, ids, ll in zip(texts, encoded, lls):
        if ids:
            totals += LikelihoodTotals.of_document(text, float(ll), len(ids))
    return totals


def _eos(tokenizer) -> int:
    if tokenizer.eos_id is None:
        raise TokenizerError("the tokenizer has no end-of-text token, which conditions each document when scoring")
    return tokenizer.eos_id


def _model_device(model) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")
