"""MinHash signatures and LSH band keys, vectorised with numpy over a batch of documents.

A document is the set of its word n-grams ("shingles"). For each of `num_perm` hash functions
h_k(x) = (a_k * x + b_k) mod 2^64, keeping the top 32 bits (multiply-shift hashing), the signature
holds min over shingles. The share of equal signature entries of two documents estimates their
Jaccard similarity. LSH cuts the signature into `bands` bands of `rows` entries and hashes each;
two documents sharing any band key become a candidate pair, with probability 1 - (1 - J^rows)^bands.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

_WORD = re.compile(r"\w+")
_MIX = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio multiplier to combine word hashes into a shingle hash


class MinHasher:
    """Signatures [num_docs, num_perm] uint32 and band keys [num_docs, bands] uint64 for batches of texts."""

    def __init__(self, num_perm: int = 128, bands: int = 16, shingle_words: int = 3, seed: int = 1):
        if not 0 < bands <= num_perm:
            raise ValueError(f"bands ({bands}) must be between 1 and num_perm ({num_perm})")
        # with rows = num_perm // bands, the last num_perm % bands entries only refine the estimate
        self.num_perm, self.bands, self.rows = num_perm, bands, num_perm // bands
        self.shingle_words = shingle_words
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd
        self.b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
        self.band_mult = rng.integers(1, 2**63, size=self.rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._word_hash: dict[str, int] = {}

    def _word_hashes(self, text: str) -> np.ndarray:
        cache = self._word_hash
        if len(cache) > 2_000_000:  # stable hashes are cheap to recompute; bound the memory
            cache.clear()
        words = _WORD.findall(text.lower())
        out = []
        for w in words:
            h = cache.get(w)
            if h is None:
                # crc32 is stable across processes and runs (Python's hash() is salted per process)
                h = cache[w] = (zlib.crc32(w.encode()) << 32) | zlib.crc32(w.encode(), 0x5BD1E995)
            out.append(h)
        return np.array(out, dtype=np.uint64)

    def shingles(self, text: str) -> np.ndarray:
        """Distinct hashes of the word n-grams of `text` (a text shorter than n words is one shingle)."""
        h = self._word_hashes(text)
        n = min(self.shingle_words, len(h)) or 1
        if len(h) == 0:
            return np.zeros(1, dtype=np.uint64)
        codes = h[: len(h) - n + 1].copy()
        with np.errstate(over="ignore"):
            for k in range(1, n):
                codes = codes * _MIX + h[k: len(h) - n + 1 + k]
        return np.unique(codes)

    def signatures(self, texts: list[str]) -> np.ndarray:
        """[len(texts), num_perm] uint32 MinHash signatures."""
        out = np.empty((len(texts), self.num_perm), dtype=np.uint32)
        if not texts:
            return out
        sets = [self.shingles(t) for t in texts]
        ends = np.cumsum([len(s) for s in sets])
        flat = np.concatenate(sets)
        # blocks of whole documents, about BLOCK shingles each: [shingles, num_perm] stays in cache
        block = max(1, (1 << 20) // self.num_perm)
        buf = np.empty((block + int(max(len(s) for s in sets)), self.num_perm), dtype=np.uint64)
        first, lo = 0, 0
        while first < len(texts):
            last = int(np.searchsorted(ends, lo + block, side="right"))
            last = max(last, first + 1)
            hi = int(ends[last - 1])
            view = buf[: hi - lo]
            np.multiply(flat[lo:hi, None], self.a[None, :], out=view)
            view += self.b[None, :]
            view >>= np.uint64(32)
            offsets = np.concatenate(([0], ends[first:last - 1] - lo))
            out[first:last] = np.minimum.reduceat(view, offsets, axis=0)
            first, lo = last, hi
        return out

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """[num_docs, bands] uint64: one hash per band of `rows` signature entries."""
        used = self.bands * self.rows
        sig = signatures[:, :used].astype(np.uint64).reshape(len(signatures), self.bands, self.rows)
        with np.errstate(over="ignore"):
            return (sig * self.band_mult).sum(axis=2, dtype=np.uint64) + np.arange(self.bands, dtype=np.uint64)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Share of equal entries of two signatures (or of row pairs of two [n, num_perm] arrays)."""
    return (np.asarray(sig_a) == np.asarray(sig_b)).mean(axis=-1)


def candidate_probability(jaccard: float, bands: int, rows: int) -> float:
    """Chance that LSH proposes a pair with this true similarity."""
    return 1.0 - (1.0 - jaccard**rows) ** bands


def lsh_shape(num_perm: int, threshold: float, margin: float = 0.05, recall: float = 0.99) -> tuple[int, int]:
    """(bands, rows) with the most rows per band (fewest chance candidates between unrelated
    documents) that still proposes pairs `margin` below the threshold with probability >= `recall`."""
    for rows in range(min(num_perm, 16), 0, -1):
        bands = num_perm // rows
        if candidate_probability(max(threshold - margin, 0.0), bands, rows) >= recall:
            return bands, rows
    return num_perm, 1
