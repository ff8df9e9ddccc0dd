"""Loss, perplexity and bits per byte: the one definition, used by the Trainer's validation, `slm quantize`'s
report and the quality benchmark.

The definition:

- **Documents.** Each document is encoded on its own and followed by the tokenizer's end-of-text id; the
  documents are concatenated into one token stream. This is the stream `slm prepare` writes into a split's
  shards, so scoring documents here and scoring the prepared split in training give the same numbers.
- **Windows.** With L = seq_len, window w holds stream tokens [w*L, w*L + L] (L + 1 tokens): the first L are
  the inputs, the last L the targets. Consecutive windows share one token, so every token after the first is
  a target exactly once; the last window's missing targets are padding (-100) and are not scored. Each
  window is a separate forward pass: the context starts afresh at each window start, wherever the document
  boundaries fall.
- **Scored targets.** Every target counts, end-of-text included: nats = sum of -ln p(target | the earlier
  tokens of its window); tokens = the number of targets. Predicting where a document ends is part of
  modelling the text, and counting every target keeps the loss the same quantity training minimises.
- **Bytes.** The UTF-8 bytes of the text the targets spell: each target counts the bytes its id decodes to,
  special tokens (end-of-text) count 0. For a byte-level tokenizer this adds up to the documents' UTF-8
  length (less the stream's first token, which is never a target); separators between documents in a
  source file ("\\n\\n", "<|endoftext|>") are not text and are not counted.
- loss = nats / tokens (nats per token), perplexity = exp(loss), bits per byte = nats / ln 2 / bytes.
  Bits per byte divides by the text's length rather than by the tokenizer's count of pieces, so models with
  different vocabularies compare on it; the end-of-text nats are charged to the text's bytes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from slmkit.errors import DataError, TokenizerError
from slmkit.model.loss import IGNORE_INDEX

Autocast = Callable[[], contextlib.AbstractContextManager]  # makes the context each forward pass runs in


@dataclass(frozen=True)
class LikelihoodTotals:
    """Sums over scored targets: `nats` (natural-log loss), `tokens` (targets), `bytes` (UTF-8 bytes the
    targets spell; 0 when no tokenizer was given). Totals from different batches or ranks add with `+`."""

    nats: float = 0.0
    tokens: int = 0
    bytes: int = 0

    def __add__(self, other: LikelihoodTotals) -> LikelihoodTotals:
        return LikelihoodTotals(self.nats + other.nats, self.tokens + other.tokens, self.bytes + other.bytes)

    @property
    def loss(self) -> float:
        """Mean nats per target token."""
        if self.tokens == 0:
            raise DataError("no tokens were scored: the text is empty or shorter than two tokens")
        return self.nats / self.tokens

    @property
    def perplexity(self) -> float:
        """exp(loss); inf when that overflows a float."""
        return math.exp(self.loss) if self.loss < 700 else math.inf

    @property
    def bits_per_byte(self) -> float | None:
        """nats / ln 2 / bytes; None when no bytes were counted (scored without a tokenizer)."""
        return self.nats / math.log(2) / self.bytes if self.bytes > 0 else None


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


def score_batch(model, x: torch.Tensor, y: torch.Tensor, byte_lengths: torch.Tensor | None = None) -> LikelihoodTotals:
    """Score one batch of windows: x, y [batch, seq] int64 on the model's device, y == -100 where not scored."""
    logits = model(x).logits  # [batch, seq, vocab]
    nats = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    scored = y[y != IGNORE_INDEX]
    nbytes = int(byte_lengths.to(y.device)[scored].sum()) if byte_lengths is not None else 0
    return LikelihoodTotals(float(nats), int(scored.numel()), nbytes)


@torch.no_grad()
def score_batches(model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                  byte_lengths: torch.Tensor | None = None, device=None,
                  autocast: Autocast = contextlib.nullcontext) -> LikelihoodTotals:
    """Sum `score_batch` over (x, y) batches (EvalBatches or `token_windows`), in eval mode (restored after).
    `autocast()` wraps each forward pass (e.g. bf16 autocast, as in training)."""
    device = _model_device(model) if device is None else torch.device(device)
    was_training = model.training
    model.eval()
    totals = LikelihoodTotals()
    try:
        for x, y in batches:
            with autocast():
                totals += score_batch(model, x.to(device), y.to(device), byte_lengths)
    finally:
        model.train(was_training)
    return totals


def token_windows(ids, seq_len: int, batch_size: int = 8) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) batches, each [<= batch_size, seq_len] int64, of the windows defined above over the token
    stream `ids` (list or 1-D tensor); x is 0 and y is -100 past the stream's end."""
    ids = torch.as_tensor(ids, dtype=torch.int64)
    targets = max(0, len(ids) - 1)
    num_windows = -(-targets // seq_len)  # ceil
    for first in range(0, num_windows, batch_size):
        count = min(batch_size, num_windows - first)
        x = torch.zeros(count, seq_len, dtype=torch.int64)
        y = torch.full((count, seq_len), IGNORE_INDEX, dtype=torch.int64)
        for row in range(count):
            start = (first + row) * seq_len
            window = ids[start:start + seq_len + 1]
            x[row, :len(window) - 1], y[row, :len(window) - 1] = window[:-1], window[1:]
        yield x, y


def score_tokens(model, ids, seq_len: int, byte_lengths: torch.Tensor | None = None, batch_size: int = 8,
                 device=None, autocast: Autocast = contextlib.nullcontext) -> LikelihoodTotals:
    """Score a token stream (e.g. `document_stream`'s) cut into windows of `seq_len` targets."""
    return score_batches(model, token_windows(ids, seq_len, batch_size), byte_lengths, device, autocast)


def document_stream(tokenizer, documents: Iterable[str], max_tokens: int | None = None) -> list[int]:
    """The token stream of `documents`: each encoded on its own, followed by end-of-text, concatenated;
    cut to its first `max_tokens` tokens when given."""
    eos = tokenizer.eos_id
    if eos is None:
        raise TokenizerError("the tokenizer has no end-of-text token, which separates documents when scoring text")
    stream: list[int] = []
    for ids in tokenizer.encode_batch(list(documents)):
        stream.extend(ids)
        stream.append(eos)
    return stream if max_tokens is None else stream[:max_tokens]


def score_documents(model, tokenizer, documents: Iterable[str], seq_len: int, batch_size: int = 8,
                    max_tokens: int | None = None, device=None,
                    autocast: Autocast = contextlib.nullcontext) -> LikelihoodTotals:
    """Loss, perplexity and bits per byte of `documents` (strings) as defined above."""
    ids = document_stream(tokenizer, documents, max_tokens)
    return score_tokens(model, ids, seq_len, token_byte_lengths(tokenizer), batch_size, device, autocast)


def _model_device(model) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")
