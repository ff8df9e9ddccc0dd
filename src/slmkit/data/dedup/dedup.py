"""Stage 2 of `slm prepare`: exact and near-duplicate removal over every part, keeping first copies.

Exact: documents with the same hash of normalised text; the first one stays.
Near: LSH band keys propose candidate pairs (documents equal on one band), the MinHash estimate
of their Jaccard similarity confirms them (>= threshold), and confirmed pairs are joined with
union-find; of each group of near duplicates only the earliest document stays.
Candidates are bounded: in a bucket of m documents sharing a band key each later member is paired
only with the bucket's first member and its predecessor (at most 2 (m - 1) pairs, not m (m - 1) / 2),
so there are at most 2 x documents x bands candidates in all. They are verified as they come (a
band, a key range of the band and a chunk of pairs at a time) and never collected: pairs already
in one union-find group are skipped, and a fixed-size table of rejected pairs spares most repeat
checks. Memory: one key range of one band (about DOCS_PER_SLICE documents), one chunk of
signatures and one part's arrays at a time. Nothing is kept per document: what was removed is a
file of flags in the work directory (`doc_flags`), exact duplicates are found in bucket files
(`exact_dedup`), and the union-find stores only the documents it has joined (`union_find`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slmkit.data.config import DedupConfig
from slmkit.data.dedup.doc_flags import EXACT, KEPT, NEAR, DocFlags
from slmkit.data.dedup.exact_dedup import flag_exact_duplicates
from slmkit.data.dedup.minhash import estimated_jaccard
from slmkit.data.dedup.part import DedupPart
from slmkit.data.dedup.union_find import SparseUnionFind
from slmkit.data.heap import trim_heap


@dataclass
class DedupStats:
    docs_in: int = 0
    exact_removed: int = 0
    near_removed: int = 0
    candidate_pairs: int = 0
    verified_pairs: int = 0
    confirmed_pairs: int = 0
    removed_by_source: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.unique's hash path is slower here than a sort)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def band_pairs(keys: np.ndarray, alive_idx: np.ndarray) -> np.ndarray:
    """[pairs, 2] int64 (i < j, distinct) of documents sharing a key of one band. `keys` are the
    band's keys of the documents `alive_idx` (in increasing order). Within a group of equal keys
    (a bucket) each later member is paired with the bucket's first (earliest) member and with its
    predecessor, so a bucket of m documents gives at most 2 (m - 1) pairs, never m (m - 1) / 2.
    Only documents whose key occurs twice or more are sorted."""
    sorted_keys = np.sort(keys)
    repeats = sorted_keys[1:][sorted_keys[1:] == sorted_keys[:-1]]
    del sorted_keys
    if not len(repeats):
        return np.zeros((0, 2), dtype=np.int64)
    repeats = _distinct(repeats)
    at = np.searchsorted(repeats, keys)
    at[at == len(repeats)] = 0
    members = np.flatnonzero(repeats[at] == keys)  # positions (among alive) of repeated keys
    del at
    sub = keys[members]
    order = np.argsort(sub, kind="stable")
    sorted_sub = sub[order]
    same_as_prev = np.r_[False, sorted_sub[1:] == sorted_sub[:-1]]
    group_start = np.maximum.accumulate(np.where(~same_as_prev, np.arange(len(sub)), 0))
    later = np.flatnonzero(same_as_prev)
    docs = np.asarray(alive_idx)[members[order]].astype(np.int64)
    pairs = np.concatenate([np.stack([docs[group_start[later]], docs[later]], axis=1),
                            np.stack([docs[later - 1], docs[later]], axis=1)])
    pairs.sort(axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    n = np.int64(docs.max()) + 1
    codes = _distinct(pairs[:, 0] * n + pairs[:, 1])  # first member and predecessor may coincide
    return np.stack([codes // n, codes % n], axis=1)


class _SignatureReader:
    """Signature rows by global document index, read from the parts' files (no memory maps)."""

    def __init__(self, parts: list[DedupPart]):
        self.parts = parts
        self.offsets = np.cumsum([0] + [p.docs for p in parts])
        self.width = int(parts[0].meta["num_perm"]) if parts else 0

    def rows(self, index: np.ndarray) -> np.ndarray:
        which = np.searchsorted(self.offsets, index, side="right") - 1
        out = np.empty((len(index), self.width), dtype=np.uint32)
        for p in np.unique(which):
            mask = which == p
            out[mask] = self.parts[p].signature_rows(index[mask] - self.offsets[p])
        return out


PAIRS_PER_CHUNK = 8192  # signatures of at most 2 x 8192 documents (8 MB at 128 x uint32) at a time
DOCS_PER_SLICE = 1 << 16  # a band's keys are paired in key ranges of about this many documents (~8 MB)
REJECTED_SLOTS = 1 << 18  # fixed table (2 MB) of pairs found dissimilar: spares most repeat checks across bands


def _slice_of(keys: np.ndarray, slices: int) -> np.ndarray:
    return ((keys >> np.uint64(32)) % np.uint64(slices)).astype(np.int64)


def _slot_of(codes: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = codes.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return (h >> np.uint64(64 - REJECTED_SLOTS.bit_length() + 1)).astype(np.int64)


@dataclass
class NearStats:
    candidate_pairs: int = 0  # pairs proposed, summed over bands (at most 2 x documents x bands)
    verified_pairs: int = 0  # signature comparisons made
    confirmed_pairs: int = 0  # comparisons at or above the threshold


def near_duplicates(parts: list[DedupPart], flags: DocFlags, threshold: float) -> NearStats:
    """Flag NEAR every document (not already flagged) with an earlier near duplicate; pair counts.

    Band by band, and within a band key range by key range (hashed keys, so ranges of about
    DOCS_PER_SLICE documents each; one bucket is never split), the documents sharing a key are
    paired with their bucket's first member and their predecessor, and the pairs are verified
    at once, a chunk at a time: pairs whose documents are already in one group are skipped, the
    others compared on their signatures, and similar ones joined by union-find. Nothing is kept
    per pair between chunks except a fixed-size table of recently rejected pairs (which only
    saves work), and nothing per document in memory: which documents take part is read from
    `flags` a part at a time, and the union-find holds only the documents joined so far."""
    stats = NearStats()
    bands = int(parts[0].meta["bands"]) if parts else 0
    offsets = flags.offsets
    slices = max(1, -(-(flags.docs - flags.count(EXACT)) // DOCS_PER_SLICE))
    reader = _SignatureReader(parts)
    uf = SparseUnionFind(flags.docs)
    rejected = np.zeros(REJECTED_SLOTS, dtype=np.int64)  # 0: empty (a pair code i * n + j with i < j is >= 1)
    n = np.int64(max(flags.docs, 1))
    for b in range(bands):
        for s in range(slices):
            keys, idx = [], []
            for k, p in enumerate(parts):
                col = p.band(b)
                mine = flags.part(k) == KEPT
                if slices > 1:
                    mine &= _slice_of(col, slices) == s
                keys.append(col[mine])
                idx.append(np.flatnonzero(mine) + offsets[k])
                del col, mine
            keys, idx = np.concatenate(keys), np.concatenate(idx)
            pairs = band_pairs(keys, idx)
            del keys, idx
            stats.candidate_pairs += len(pairs)
            for lo in range(0, len(pairs), PAIRS_PER_CHUNK):
                chunk = pairs[lo:lo + PAIRS_PER_CHUNK]
                chunk = chunk[uf.roots(chunk[:, 0]) != uf.roots(chunk[:, 1])]  # not yet in one group
                codes = chunk[:, 0] * n + chunk[:, 1]
                slot = _slot_of(codes)
                fresh = rejected[slot] != codes
                chunk, codes, slot = chunk[fresh], codes[fresh], slot[fresh]
                if not len(chunk):
                    continue
                stats.verified_pairs += len(chunk)
                sig = reader.rows(chunk.ravel()).reshape(len(chunk), 2, -1)  # one read of each part for both sides
                similar = estimated_jaccard(sig[:, 0], sig[:, 1]) >= threshold
                del sig
                rejected[slot[~similar]] = codes[~similar]
                stats.confirmed_pairs += int(similar.sum())
                for i, j in chunk[similar]:
                    uf.union(int(i), int(j))
            del pairs
        trim_heap()  # what one band freed goes back to the system
    # a document joined to an earlier one has an earlier near duplicate (exact copies never
    # took part, so none of them is among the joined)
    flags.mark(uf.joined(), NEAR)
    return stats


@dataclass
class Removal:
    """Dedup's decision for every document, on disk; `keep(k)` reads part k's mask."""

    flags: DocFlags

    def keep(self, k: int) -> np.ndarray:
        return self.flags.keep(k)


def deduplicate(parts: list[DedupPart], cfg: DedupConfig, source_names: list[str],
                work: Path) -> tuple[Removal, DedupStats]:
    """Which documents to keep (flags in `work`, rebuilt from scratch), and what was removed."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    flags = DocFlags(work / "flags.bin", [p.docs for p in parts])
    stats = DedupStats(docs_in=flags.docs)
    if flags.docs and cfg.exact:
        stats.exact_removed = flag_exact_duplicates(parts, flags, work)
    if flags.docs and cfg.near:
        near = near_duplicates(parts, flags, cfg.threshold)
        stats.candidate_pairs, stats.verified_pairs, stats.confirmed_pairs = (
            near.candidate_pairs, near.verified_pairs, near.confirmed_pairs)
        stats.near_removed = flags.count(NEAR)
    stats.removed_by_source = {name: {"exact": 0, "near": 0} for name in source_names}
    for k, p in enumerate(parts):  # a part at a time
        part_flags, source = flags.part(k), p.column("source")
        for s, name in enumerate(source_names):
            mine = part_flags[source == s]
            stats.removed_by_source[name]["exact"] += int((mine == EXACT).sum())
            stats.removed_by_source[name]["near"] += int((mine == NEAR).sum())
    return Removal(flags), stats
