"""N-gram baselines over token ids: what a neural model's bits per byte should beat.

Three baselines, all scored on `slmkit.eval.likelihood`'s definition (documents each followed by
end-of-text, concatenated into one stream by `document_stream`; every token after the stream's first is a
target; bytes from `token_byte_lengths`), so their bits per byte compare directly with a model's:

- **uniform**: every id of the vocabulary equally likely, ln V nats per target (`score_uniform`).
- **unigram**: token frequencies with add-one (Laplace) smoothing over the whole vocabulary (`UnigramModel`).
- **interpolated modified Kneser-Ney** of order n = 1..5 (`KneserNeyModel`, Chen & Goodman 1998): the
  highest order uses raw counts, lower orders continuation counts (how many distinct ids precede an n-gram);
  each order subtracts the discount D1, D2 or D3+ (for counts 1, 2, >= 3, estimated from that order's
  count-of-counts) and gives the mass removed to the next lower order, down to a uniform distribution over
  the vocabulary, so every id has probability > 0.

Contexts: a target is conditioned on up to n-1 previous tokens of the stream; an n-gram may look across
end-of-text, because that is the stream (training counts n-grams over the training stream the same way).
The stream's first targets have fewer previous tokens and are predicted by the lower orders alone. The
neural model's context restarts at each window start; the n-gram's does not, a difference that only helps
the baseline by a few tokens per window.

    train_ids = document_stream(tokenizer, train_documents)
    model = KneserNeyModel.train(train_ids, tokenizer.vocab_size, order=3)
    totals = model.score(document_stream(tokenizer, documents), token_byte_lengths(tokenizer))
    totals.bits_per_byte
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from slmkit.errors import ConfigError, DataError
from slmkit.eval.likelihood import LikelihoodTotals, document_stream, token_byte_lengths

MAX_ORDER = 5
# Used where Chen & Goodman's estimate is undefined (a zero count-of-counts, in tiny corpora) or out of
# range; the usual single absolute discount (NLTK's default).
FALLBACK_DISCOUNT = 0.75


def score_uniform(stream, vocab_size: int, byte_lengths=None) -> LikelihoodTotals:
    """Totals of the uniform distribution over `vocab_size` ids: ln(vocab_size) nats per target.
    `stream` [tokens] int ids; `byte_lengths` [vocab] int (token_byte_lengths) or None (bytes = 0)."""
    _check_vocab_size(vocab_size)
    targets = _as_stream(stream, vocab_size, "scored")[1:]
    return LikelihoodTotals(len(targets) * math.log(vocab_size), len(targets),
                            _count_bytes(targets, byte_lengths, vocab_size))


@dataclass(frozen=True)
class UnigramModel:
    """p(id) = (count(id) + 1) / (tokens + vocab_size), whatever the context. `counts` [vocab] int64: how
    often each id occurs in the training stream."""

    counts: np.ndarray = field(repr=False)

    order = 1

    @classmethod
    def train(cls, stream, vocab_size: int) -> UnigramModel:
        """Count every token of `stream` (training ids, [tokens])."""
        _check_vocab_size(vocab_size)
        ids = _as_stream(stream, vocab_size, "training")
        if ids.size == 0:
            raise DataError("the training stream is empty: give the unigram baseline some training text")
        return cls(np.bincount(ids, minlength=vocab_size).astype(np.int64))

    @property
    def vocab_size(self) -> int:
        return len(self.counts)

    def probabilities(self, context: Sequence[int] = ()) -> np.ndarray:
        """[vocab] float64, sums to one; the context is ignored."""
        return (self.counts + 1.0) / (self.counts.sum() + self.vocab_size)

    def score(self, stream, byte_lengths=None) -> LikelihoodTotals:
        """Totals over every target of `stream` [tokens]; `byte_lengths` [vocab] or None (bytes = 0)."""
        targets = _as_stream(stream, self.vocab_size, "scored")[1:]
        nats = -np.log(self.probabilities()[targets]).sum()
        return LikelihoodTotals(float(nats), len(targets), _count_bytes(targets, byte_lengths, self.vocab_size))


@dataclass(frozen=True)
class _Order:
    """One order k of the Kneser-Ney model. Each k-gram seen in training has an id, its index in `keys`;
    a k-gram's key is (id of its (k-1)-gram prefix, the context) * vocab_size + its last id, so the k-grams
    of one context are a contiguous run of `keys`. For order 1 the context is the empty gram, id 0."""

    keys: np.ndarray  # [k-grams] int64, sorted
    kept: np.ndarray  # [k-grams] float64: count - discount
    totals: np.ndarray  # [contexts] float64: sum of the counts of the context's k-grams
    removed: np.ndarray  # [contexts] float64: sum of the discounts, the mass handed to order k-1
    discounts: tuple[float, float, float]  # D1, D2, D3+


@dataclass(frozen=True)
class KneserNeyModel:
    """Interpolated modified Kneser-Ney over token ids (see the module docstring). With c the count of the
    k-gram (h, w) (raw for the highest order, continuation count below) and c(h) the sum over w:

        p_k(w | h) = (max(c - D(c), 0) + (D1 N1(h) + D2 N2(h) + D3+ N3+(h)) p_{k-1}(w | h minus its first id)) / c(h)

    where N_j(h) counts the ids following h with count j; p_k = p_{k-1} when h was never followed by an id
    in training; p_0 = 1 / vocab_size."""

    vocab_size: int
    order: int
    orders: tuple[_Order, ...] = field(repr=False)

    @classmethod
    def train(cls, stream, vocab_size: int, order: int = 3) -> KneserNeyModel:
        """Count the n-grams of `stream` (training ids, [tokens]) for orders 1..`order`."""
        _check_vocab_size(vocab_size)
        if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= MAX_ORDER:
            raise ConfigError(f"n-gram order {order!r} is not supported: use an integer from 1 to {MAX_ORDER}")
        ids = _as_stream(stream, vocab_size, "training")
        if ids.size == 0:
            raise DataError("the training stream is empty: give the Kneser-Ney baseline some training text")
        grams = _count_grams(ids, vocab_size, order)
        orders = []
        for k, (keys, positions, _, raw) in enumerate(grams, start=1):
            if k == order:
                counts = raw
            else:  # continuation counts: one per distinct (k+1)-gram ending in this k-gram
                counts = np.bincount(positions[grams[k][2]], minlength=len(keys))
                if len(ids) >= k:  # the k-gram opening the stream has the stream's start as a left neighbour
                    counts[positions[k - 1]] += 1
            contexts = len(grams[k - 2][0]) if k > 1 else 1
            orders.append(_discounted_order(keys, counts, contexts, vocab_size))
        return cls(vocab_size, order, tuple(orders))

    @property
    def discounts(self) -> tuple[tuple[float, float, float], ...]:
        """(D1, D2, D3+) of each order, lowest first."""
        return tuple(level.discounts for level in self.orders)

    @property
    def ngram_counts(self) -> tuple[int, ...]:
        """How many distinct k-grams the training stream holds, k = 1..order."""
        return tuple(len(level.keys) for level in self.orders)

    def probabilities(self, context: Sequence[int] = ()) -> np.ndarray:
        """[vocab] float64 p(next id | the last order-1 ids of `context`), > 0 everywhere, sums to one."""
        context = _as_stream(context, self.vocab_size, "context").tolist()
        probs = np.full(self.vocab_size, 1.0 / self.vocab_size)
        for k, level in enumerate(self.orders, start=1):
            if k - 1 > len(context):
                break
            h = self._gram_id(context[len(context) - (k - 1):])
            if h < 0 or level.totals[h] == 0:
                continue  # never followed by an id in training: this order adds nothing
            first, end = np.searchsorted(level.keys, [h * self.vocab_size, (h + 1) * self.vocab_size])
            probs *= level.removed[h] / level.totals[h]
            probs[level.keys[first:end] - h * self.vocab_size] += level.kept[first:end] / level.totals[h]
        return probs

    def score(self, stream, byte_lengths=None) -> LikelihoodTotals:
        """Totals over every target of `stream` [tokens]; `byte_lengths` [vocab] or None (bytes = 0)."""
        ids = _as_stream(stream, self.vocab_size, "scored")
        probs = self.target_probabilities(ids)
        return LikelihoodTotals(float(-np.log(probs).sum()), len(probs),
                                _count_bytes(ids[1:], byte_lengths, self.vocab_size))

    def target_probabilities(self, stream) -> np.ndarray:
        """[tokens - 1] float64: p(stream[i] | up to order-1 ids before it) for i = 1.., all at once."""
        ids = _as_stream(stream, self.vocab_size, "scored")
        if len(ids) < 2:
            return np.zeros(0)
        probs = np.full(len(ids) - 1, 1.0 / self.vocab_size)
        ending_here = np.zeros(len(ids), dtype=np.int64)  # id of the (k-1)-gram ending at each position
        for k, level in enumerate(self.orders, start=1):
            h = ending_here[:-1]  # each target's context
            totals = np.where(h >= 0, level.totals[np.maximum(h, 0)], 0.0)
            seen = totals > 0
            gram = _lookup(level.keys, h, ids[1:], self.vocab_size)
            kept = np.where(gram >= 0, level.kept[np.maximum(gram, 0)], 0.0)
            mixed = (kept + level.removed[np.maximum(h, 0)] * probs) / np.where(seen, totals, 1.0)
            probs = np.where(seen, mixed, probs)
            first = _lookup(level.keys, np.zeros(1, np.int64), ids[:1], self.vocab_size) if k == 1 else [-1]
            ending_here = np.concatenate([first, gram])
        return probs

    def _gram_id(self, gram: Sequence[int]) -> int:
        """The id of `gram` (len(gram) ids) at its order; 0 for the empty gram, -1 if never seen."""
        gram_id = 0
        for level, token in zip(self.orders, gram):
            found = _lookup(level.keys, np.array([gram_id]), np.array([token]), self.vocab_size)
            gram_id = int(found[0])
            if gram_id < 0:
                break
        return gram_id


def ngram_baselines(tokenizer, train_documents: Iterable[str], documents: Iterable[str],
                    order: int = 3) -> dict[str, LikelihoodTotals]:
    """Totals of the uniform, unigram and Kneser-Ney (`order`) baselines on `documents`, the n-gram models
    trained on `train_documents`; keys 'uniform', 'unigram', f'kneser-ney-{order}'."""
    train_ids = document_stream(tokenizer, train_documents)
    ids = document_stream(tokenizer, documents)
    byte_lengths = token_byte_lengths(tokenizer).numpy()
    vocab = tokenizer.vocab_size
    return {
        "uniform": score_uniform(ids, vocab, byte_lengths),
        "unigram": UnigramModel.train(train_ids, vocab).score(ids, byte_lengths),
        f"kneser-ney-{order}": KneserNeyModel.train(train_ids, vocab, order).score(ids, byte_lengths),
    }


def _count_grams(ids: np.ndarray, vocab_size: int, order: int) -> list[tuple[np.ndarray, ...]]:
    """For k = 1..order: (keys [k-grams] sorted, positions [tokens] the id of the k-gram ending at each
    position or -1 before position k-1, first_seen [k-grams] the position where each k-gram first ends,
    raw [k-grams] how often each occurs)."""
    grams = []
    prefix = np.zeros(len(ids), dtype=np.int64)  # order 0: the empty gram ends everywhere, id 0
    for k in range(1, order + 1):
        starts = k - 1  # the first position a k-gram can end at; prefix holds one id per end position
        keys, first, inverse, raw = np.unique(prefix * vocab_size + ids[starts:], return_index=True,
                                              return_inverse=True, return_counts=True)
        positions = np.full(len(ids), -1, dtype=np.int64)
        positions[starts:] = inverse
        grams.append((keys, positions, first + starts, raw))
        prefix = positions[starts:len(ids) - 1]  # the (k+1)-gram ending at i has the k-gram ending at i-1
    return grams


def _discounted_order(keys: np.ndarray, counts: np.ndarray, contexts: int, vocab_size: int) -> _Order:
    discounts = _discounts(counts)
    removed = np.array([0.0, *discounts])[np.minimum(counts, 3)]  # every D_j <= j: counts stay >= 0
    context_of = keys // vocab_size
    return _Order(keys, counts - removed,
                  np.bincount(context_of, weights=counts.astype(np.float64), minlength=contexts),
                  np.bincount(context_of, weights=removed, minlength=contexts), discounts)


def _discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """Chen & Goodman's D1, D2, D3+ from the count-of-counts n1..n4 of `counts`: Y = n1 / (n1 + 2 n2),
    Dj = j - (j+1) Y n_{j+1} / n_j. An estimate that is undefined (some n zero) or outside (0, j] is
    FALLBACK_DISCOUNT instead."""
    n = np.bincount(np.minimum(counts, 5), minlength=6)[1:5].tolist()  # n1..n4
    discounts = []
    for j in (1, 2, 3):
        estimate = FALLBACK_DISCOUNT
        if all(n[:j + 1]):
            y = n[0] / (n[0] + 2 * n[1])
            candidate = j - (j + 1) * y * n[j] / n[j - 1]
            if 0 < candidate <= j:
                estimate = candidate
        discounts.append(float(estimate))
    return discounts[0], discounts[1], discounts[2]


def _lookup(keys: np.ndarray, prefix: np.ndarray, last: np.ndarray, vocab_size: int) -> np.ndarray:
    """Ids of the grams (prefix id, last id) in the sorted `keys`, -1 where absent or the prefix is -1."""
    if len(keys) == 0:
        return np.full(len(last), -1, dtype=np.int64)
    wanted = np.maximum(prefix, 0) * vocab_size + last
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where((prefix >= 0) & (keys[at] == wanted), at, -1)


def _as_stream(stream, vocab_size: int, what: str) -> np.ndarray:
    ids = np.asarray(stream, dtype=np.int64)
    if ids.ndim != 1:
        raise DataError(f"the {what} stream must be a 1-D sequence of token ids, got shape {tuple(ids.shape)}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        bad = int(ids.max()) if ids.max() >= vocab_size else int(ids.min())
        raise DataError(f"the {what} stream holds id {bad}, outside the vocabulary 0..{vocab_size - 1}: "
                        "encode the text with the tokenizer the baseline was trained for")
    return ids


def _count_bytes(targets: np.ndarray, byte_lengths, vocab_size: int) -> int:
    if byte_lengths is None:
        return 0
    lengths = np.asarray(byte_lengths, dtype=np.int64)
    if lengths.shape != (vocab_size,):
        raise DataError(f"byte_lengths has shape {tuple(lengths.shape)} but the vocabulary has {vocab_size} ids: "
                        "pass token_byte_lengths(tokenizer) for the tokenizer the baseline was trained for")
    return int(lengths[targets].sum())


def _check_vocab_size(vocab_size: int) -> None:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ConfigError(f"vocab_size must be a positive integer (the tokenizer's vocab_size), got {vocab_size!r}")
