"""Byte-level BPE training from scratch.

The vocabulary starts as the 256 single bytes; each step merges the most frequent adjacent pair
of tokens (ties: the lexicographically greater pair of byte strings, first element then second)
until the requested size is reached; special tokens come last. The size counts all three, as the
`tokenizers` library does. Pre-tokens are counted once; after each merge only the words that
contain the merged pair are revisited and pair counts are updated incrementally.
"""

from __future__ import annotations

import heapq
import os
from collections import Counter

from tqdm import tqdm

from slmkit.errors import TokenizerError
from slmkit.tokenizer.bpe import Tokenizer
from slmkit.tokenizer.patterns import resolve_pattern
from slmkit.tokenizer.pretoken_counts import count_pretokens
from slmkit.tokenizer.pretokenize import compile_pattern, special_splitter, split_on_specials

DEFAULT_SPECIALS = ("<|endoftext|>",)


def _descending_key(token: bytes) -> tuple[int, ...]:
    """A key whose ascending order is the bytes' descending order (so a min-heap pops the greatest)."""
    return tuple(255 - b for b in token) + (256,)


def learn_merges(
    word_counts: dict[bytes, int], n_merges: int, progress: bool = False
) -> tuple[dict[int, bytes], list[tuple[int, int]]]:
    """Learn up to `n_merges` merges over words given as {bytes: count}.

    Returns the vocabulary (ids 0-255 are the single bytes, then merged tokens in order) and
    the merges as (left_id, right_id) pairs.
    """
    vocab = {i: bytes([i]) for i in range(256)}
    keys = {i: _descending_key(vocab[i]) for i in range(256)}
    id_of = {b: i for i, b in vocab.items()}
    words = [list(w) for w in word_counts]
    counts = list(word_counts.values())

    pair_counts: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], set[int]] = {}
    for w, (word, count) in enumerate(zip(words, counts)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] = pair_counts.get(pair, 0) + count
            where.setdefault(pair, set()).add(w)
    heap = [(-c, keys[a], keys[b], a, b) for (a, b), c in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    bar = tqdm(total=n_merges, desc="merges", unit="merge", disable=not progress, leave=False)
    while len(merges) < n_merges and heap:
        neg, _, _, a, b = heapq.heappop(heap)
        if pair_counts.get((a, b), 0) != -neg or neg == 0:
            continue  # a stale entry: the pair's count changed after it was pushed
        merged_bytes = vocab[a] + vocab[b]
        new_id = id_of.get(merged_bytes)
        if new_id is None:  # the same bytes can be reached by two different merges; keep one id
            new_id = len(vocab)
            vocab[new_id] = merged_bytes
            keys[new_id] = _descending_key(merged_bytes)
            id_of[merged_bytes] = new_id
        merges.append((a, b))
        bar.update(1)

        changed: set[tuple[int, int]] = set()
        for w in where.pop((a, b), ()):
            word, count = words[w], counts[w]
            if len(word) < 2:
                continue
            for pair in zip(word, word[1:]):
                pair_counts[pair] -= count
                changed.add(pair)
            merged, k = [], 0
            while k < len(word):
                if k + 1 < len(word) and word[k] == a and word[k + 1] == b:
                    merged.append(new_id)
                    k += 2
                else:
                    merged.append(word[k])
                    k += 1
            words[w] = merged
            for pair in zip(merged, merged[1:]):
                pair_counts[pair] = pair_counts.get(pair, 0) + count
                changed.add(pair)
                if pair != (a, b):
                    where.setdefault(pair, set()).add(w)
        pair_counts.pop((a, b), None)
        for pair in changed:
            c = pair_counts.get(pair, 0)
            if c > 0:
                heapq.heappush(heap, (-c, keys[pair[0]], keys[pair[1]], pair[0], pair[1]))
            else:
                pair_counts.pop(pair, None)
    bar.close()
    return vocab, merges


def _check_size(vocab_size: int, special_tokens) -> list[str]:
    special_tokens = list(dict.fromkeys(special_tokens))
    minimum = 256 + len(special_tokens)
    if vocab_size < minimum:
        raise TokenizerError(
            f"vocab size {vocab_size} is too small: it must be at least 256 bytes + {len(special_tokens)} "
            f"special tokens = {minimum}"
        )
    return special_tokens


def train_bpe(
    inputs: list[str | os.PathLike],
    vocab_size: int,
    special_tokens: list[str] | tuple[str, ...] = DEFAULT_SPECIALS,
    pattern: str = "gpt2",
    num_workers: int | None = None,
    progress: bool = False,
) -> Tokenizer:
    """Train a byte-level BPE tokenizer on text files; `vocab_size` counts bytes, merges and specials."""
    special_tokens = _check_size(vocab_size, special_tokens)
    if not inputs:
        raise TokenizerError("no input files given to train the tokenizer on")
    regex_text = resolve_pattern(pattern)
    pretokens = count_pretokens(inputs, regex_text, special_tokens, num_workers)
    if not pretokens:
        raise TokenizerError(f"the input has no text to train on: {', '.join(map(str, inputs))}")
    return train_bpe_from_counts(pretokens, vocab_size, special_tokens, regex_text, progress)


def train_bpe_from_counts(
    pretokens: Counter | dict[str, int],
    vocab_size: int,
    special_tokens: list[str],
    pattern: str,
    progress: bool = False,
) -> Tokenizer:
    word_counts = {piece.encode("utf-8"): n for piece, n in pretokens.items()}
    n_merges = vocab_size - 256 - len(special_tokens)
    vocab, merges = learn_merges(word_counts, n_merges, progress)
    next_id = len(vocab)
    specials = {s: next_id + k for k, s in enumerate(special_tokens)}
    return Tokenizer(vocab, merges, specials, pattern=pattern)


def train_bpe_from_texts(
    texts: list[str], vocab_size: int, special_tokens=DEFAULT_SPECIALS, pattern: str = "gpt2"
) -> Tokenizer:
    """Train on in-memory strings (small corpora, tests, notebooks)."""
    special_tokens = _check_size(vocab_size, special_tokens)
    regex_text = resolve_pattern(pattern)
    regex, splitter = compile_pattern(regex_text), special_splitter(special_tokens)
    counts: Counter = Counter()
    for text in texts:
        for k, part in enumerate(split_on_specials(text, splitter)):
            if k % 2 == 0 and part:
                counts.update(regex.findall(part))
    return train_bpe_from_counts(counts, vocab_size, special_tokens, regex_text)
