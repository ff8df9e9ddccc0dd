"""MinHash signatures and LSH band keys, vectorised with numpy over a batch of documents.

A document is the set of its word n-grams ("shingles"). Signatures use one-permutation hashing
(Li, Owen & Zhang 2012) with optimal densification (Shrivastava 2017): each shingle gets one 64-bit
hash; its high bits pick one of `num_perm` bins and its low 32 bits are its value; a bin keeps the
smallest value that falls in it. A bin left empty (short documents) copies the value of the first
non-empty bin along a fixed pseudo-random sequence of bins, the same for every document. The share
of equal entries of two signatures is an unbiased estimate of the Jaccard similarity of the two
shingle sets, as with `num_perm` independent hash functions, but the cost is one hash and one
scatter-min (`np.minimum.at`) per shingle instead of `num_perm` multiplications.

LSH cuts the signature into `bands` bands of `rows` entries and hashes each; two documents sharing
any band key become a candidate pair, with probability 1 - (1 - J^rows)^bands.

Word hashes come from `slmkit.data.clean.words` (blake2b, stable across processes and runs); a shingle's
hash mixes its word hashes and goes through a 64-bit finaliser (murmur3's fmix64).
"""

from __future__ import annotations

import numpy as np

from slmkit.data.clean.words import WordBatch, WordTable
from slmkit.data.config import DedupConfig

_MIX = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio multiplier to combine word hashes into a shingle hash
_M32 = np.uint64(0xFFFFFFFF)
DOCS_PER_BLOCK = 4096  # documents sorted together (bounds the temporary arrays)


def fmix64(x: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finaliser (a bijection that mixes every input bit into every output bit)."""
    x = x.copy()
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(33)
        x *= np.uint64(0xFF51AFD7ED558CCD)
        x ^= x >> np.uint64(33)
        x *= np.uint64(0xC4CEB9FE1A85EC53)
        x ^= x >> np.uint64(33)
    return x


def shingle_hashes(hashes: np.ndarray, counts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the word n-grams of each document (flat) and how many each document has.
    A document of fewer than n words is one shingle of all its words (no words: one shingle, 0)."""
    counts = np.asarray(counts, dtype=np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    total = len(hashes)
    per_doc = np.maximum(counts - n + 1, 1)
    full = counts >= n
    end_of = np.repeat(offsets[1:], counts)
    starts = np.flatnonzero(np.arange(total) + n <= end_of)  # n-grams inside full documents
    codes = hashes[starts]
    with np.errstate(over="ignore"):
        for k in range(1, n):
            codes = codes * _MIX + hashes[starts + k]
    if full.all():
        return fmix64(codes), per_doc
    out = np.empty(int(per_doc.sum()), dtype=np.uint64)
    out_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(per_doc, out=out_offsets[1:])
    out[np.repeat(full, per_doc)] = codes
    for d in np.flatnonzero(~full):  # short documents: rare (cleaning drops them), a loop is fine
        code = np.uint64(0)
        with np.errstate(over="ignore"):
            for h in hashes[offsets[d]:offsets[d + 1]]:
                code = code * _MIX + h
        out[out_offsets[d]] = code
    return fmix64(out), per_doc


class MinHasher:
    """Signatures [num_docs, num_perm] uint32 and band keys [num_docs, bands] uint64 for batches of texts."""

    def __init__(self, num_perm: int = 128, bands: int = 16, shingle_words: int = 3, seed: int = 1):
        if not 0 < bands <= num_perm:
            raise ValueError(f"bands ({bands}) must be between 1 and num_perm ({num_perm})")
        # with rows = num_perm // bands, the last num_perm % bands entries only refine the estimate
        self.num_perm, self.bands, self.rows = num_perm, bands, num_perm // bands
        self.shingle_words = shingle_words
        rng = np.random.default_rng(seed)
        self.salt = rng.integers(0, 2**63, dtype=np.uint64)
        # densification: bin j looks at bins order[j, 0], order[j, 1], ... for the first non-empty one
        self.order = np.stack([rng.permutation(num_perm) for _ in range(num_perm)])
        self.band_mult = rng.integers(1, 2**63, size=self.rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.words = WordTable()

    def signatures(self, texts: list[str]) -> np.ndarray:
        """[len(texts), num_perm] uint32 signatures of the word n-grams of `texts`."""
        out = np.empty((len(texts), self.num_perm), dtype=np.uint32)
        for lo in range(0, len(texts), DOCS_PER_BLOCK):
            out[lo:lo + DOCS_PER_BLOCK] = self.signatures_of_words(self.words.words(texts[lo:lo + DOCS_PER_BLOCK]))
        return out

    def signatures_of_words(self, words: WordBatch) -> np.ndarray:
        """Signatures from words already split (the cleaning step's split, shared)."""
        docs = len(words.counts)
        out = np.empty((docs, self.num_perm), dtype=np.uint32)
        offsets = words.offsets
        for lo in range(0, docs, DOCS_PER_BLOCK):
            hi = min(docs, lo + DOCS_PER_BLOCK)
            hashes = words.hashes[offsets[lo]:offsets[hi]]
            out[lo:hi] = self._one_permutation(*shingle_hashes(hashes, words.counts[lo:hi], self.shingle_words))
        return out

    def _one_permutation(self, shingles: np.ndarray, per_doc: np.ndarray) -> np.ndarray:
        k = self.num_perm
        docs = len(per_doc)
        h = shingles ^ self.salt
        with np.errstate(over="ignore"):
            h = fmix64(h)
        slot = np.repeat(np.arange(docs, dtype=np.int64) * k, per_doc)
        slot += (((h >> np.uint64(32)) * np.uint64(k)) >> np.uint64(32)).astype(np.int64)  # high bits -> bin
        sig = np.full(docs * k, 0xFFFFFFFF, dtype=np.uint32)
        np.minimum.at(sig, slot, (h & _M32).astype(np.uint32))  # the smallest value in each (document, bin)
        filled = np.zeros(docs * k, dtype=bool)
        filled[slot] = True
        sig, filled = sig.reshape(docs, k), filled.reshape(docs, k)
        empty_doc, empty_bin = np.nonzero(~filled)
        values = sig.copy()
        for t in range(k):  # every document has a shingle, so some bin is filled: at most k rounds
            if not len(empty_doc):
                break
            source = self.order[empty_bin, t]
            hit = filled[empty_doc, source]
            values[empty_doc[hit], empty_bin[hit]] = sig[empty_doc[hit], source[hit]]
            empty_doc, empty_bin = empty_doc[~hit], empty_bin[~hit]
        return values

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


def lsh_bands(cfg: DedupConfig) -> int:
    """LSH bands of the dedup settings: `cfg.bands`, or when it is 0 the shape `lsh_shape` picks
    from the threshold (0.8 -> 25 bands of 5 rows, 0.7 -> 32 x 4)."""
    return cfg.bands or lsh_shape(cfg.num_perm, cfg.threshold)[0]
