"""Whole-document log-likelihood in lm-eval's rolling windows, and the perplexities built on it.

A document's tokens t[0..n) are all predicted exactly once, in windows of at most L = max_length inputs:

- window 1 predicts t[0..L) from [prefix] + t[0..L-1): the prefix (end-of-text) conditions the first token;
- window k predicts the next L tokens from the one token before them plus those tokens minus the last;
- the last, shorter window keeps a full L-token input, so its first targets see more than one token of
  context (lm-eval's `get_rolling_token_windows(context_len=1)` + `make_disjoint_window`).

Each window is a (context, continuation) request for `LoglikelihoodScorer`; the document's log-likelihood is
their sum. Corpus metrics weigh every document by its size (lm-eval's `weighted_perplexity` and
`bits_per_byte` aggregations, not means of per-document values):

    word_perplexity = exp(-sum(ll) / sum(words)),  words = len(re.split(r"\\s+", doc))
    byte_perplexity = exp(-sum(ll) / sum(bytes)),  bytes = len(doc.encode("utf-8"))
    bits_per_byte   = -sum(ll) / sum(bytes) / ln 2
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from slmkit.errors import DataError


def rolling_windows(tokens: Sequence[int], prefix_id: int, max_length: int) -> Iterator[tuple[list[int], list[int]]]:
    """(context ids, continuation ids) windows that together predict every token of `tokens` once."""
    if max_length < 1:
        raise DataError(f"max_length must be at least 1, not {max_length}")
    tokens = list(tokens)
    if not tokens:
        return
    first = min(max_length, len(tokens))
    yield [prefix_id], tokens[:first]
    predicted = first
    while predicted < len(tokens):
        count = min(len(tokens) - predicted, max_length)
        end = predicted + count
        inputs = tokens[max(0, end - max_length - 1):end - 1]
        context = inputs[:len(inputs) - (count - 1)]
        yield context, tokens[predicted:end]
        predicted = end


def word_count(document: str) -> int:
    """lm-eval's word count: pieces of re.split(r"\\s+", doc) (leading/trailing whitespace counts a piece)."""
    return len(re.split(r"\s+", document))


@dataclass(frozen=True)
class RollingTotals:
    """Sums over documents: log-likelihood (nats, negative), words, UTF-8 bytes, tokens predicted."""

    loglikelihood: float = 0.0
    words: int = 0
    bytes: int = 0
    tokens: int = 0
    documents: int = 0

    def __add__(self, other: RollingTotals) -> RollingTotals:
        return RollingTotals(self.loglikelihood + other.loglikelihood, self.words + other.words,
                             self.bytes + other.bytes, self.tokens + other.tokens, self.documents + other.documents)

    @classmethod
    def of(cls, document: str, loglikelihood: float, tokens: int = 0) -> RollingTotals:
        return cls(loglikelihood, word_count(document), len(document.encode("utf-8")), tokens, 1)

    def _need(self, amount: int, what: str) -> None:
        if amount <= 0:
            raise DataError(f"no {what} were scored: the documents are empty")

    @property
    def word_perplexity(self) -> float:
        self._need(self.words, "words")
        return _safe_exp(-self.loglikelihood / self.words)

    @property
    def byte_perplexity(self) -> float:
        self._need(self.bytes, "bytes")
        return _safe_exp(-self.loglikelihood / self.bytes)

    @property
    def bits_per_byte(self) -> float:
        self._need(self.bytes, "bytes")
        return -self.loglikelihood / self.bytes / math.log(2)

    @property
    def token_perplexity(self) -> float:
        self._need(self.tokens, "tokens")
        return _safe_exp(-self.loglikelihood / self.tokens)

    def metrics(self) -> dict[str, float]:
        out = {"word_perplexity": self.word_perplexity, "byte_perplexity": self.byte_perplexity,
               "bits_per_byte": self.bits_per_byte}
        if self.tokens:
            out["token_perplexity"] = self.token_perplexity
        return out


def _safe_exp(x: float) -> float:
    return math.exp(x) if x < 700 else math.inf
