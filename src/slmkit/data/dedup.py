"""Stage 2 of `slm prepare`: exact and near-duplicate removal over every part, keeping first copies.

Exact: documents with the same hash of normalised text; the first one stays.
Near: LSH band keys propose candidate pairs (documents equal on one band), the MinHash estimate
of their Jaccard similarity confirms them (>= threshold), and confirmed pairs are joined with
union-find; of each group of near duplicates only the earliest document stays.
Memory is a few integers per document: band keys are read and sorted one band at a time (only the
documents whose key repeats are paired), each band's new candidate pairs are verified at once
(signatures read from the parts' files, a chunk at a time), and the pairs seen so far are kept as
one int64 each (so that a pair is verified once).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from slmkit.data.config import DedupConfig
from slmkit.data.document_parts import Part
from slmkit.data.minhash import estimated_jaccard

@dataclass
class DedupStats:
    docs_in: int = 0
    exact_removed: int = 0
    near_removed: int = 0
    candidate_pairs: int = 0
    confirmed_pairs: int = 0
    removed_by_source: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, i: int) -> int:
        parent = self.parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return int(root)

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:  # the smaller index (earlier document) becomes the root
            self.parent[max(ri, rj)] = min(ri, rj)


def exact_duplicates(exact: np.ndarray) -> np.ndarray:
    """[docs] bool, True for every copy after the first of the same hash."""
    _, first = np.unique(exact, return_index=True)
    dup = np.ones(len(exact), dtype=bool)
    dup[first] = False
    return dup


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.unique's hash path is slower here than a sort)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def band_pairs(keys: np.ndarray, alive_idx: np.ndarray) -> np.ndarray:
    """[pairs, 2] int64 (i < j, distinct) of documents sharing a key of one band. `keys` are the
    band's keys of the documents `alive_idx`. Only documents whose key occurs twice or more are
    sorted; within a group of equal keys each member is paired with the group's first member and
    with its predecessor (vectorised)."""
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
    docs = alive_idx[members[order]]
    pairs = np.concatenate([np.stack([docs[group_start[later]], docs[later]], axis=1),
                            np.stack([docs[later - 1], docs[later]], axis=1)])
    pairs.sort(axis=1)
    return pairs[pairs[:, 0] != pairs[:, 1]]


def candidate_pairs(band_columns, alive: np.ndarray) -> np.ndarray:
    """[pairs, 2] int64 (i < j), sorted and distinct, of alive documents that share a key in at
    least one band. `band_columns` yields one [docs] uint64 array per band (or a callable giving
    it the alive mask)."""
    return np.concatenate(list(_new_pairs_by_band(band_columns, alive)) or [np.zeros((0, 2), dtype=np.int64)])


def _new_pairs_by_band(band_columns, alive: np.ndarray):
    """Per band, the candidate pairs no earlier band proposed. Pairs seen so far are kept as one
    sorted int64 code each (i * docs + j), one array per band (no merging copies): 8 bytes a
    distinct pair."""
    alive_idx = np.flatnonzero(alive)
    n = np.int64(len(alive))
    seen: list[np.ndarray] = []
    for keys in band_columns:
        keys = keys(alive) if callable(keys) else keys[alive_idx]
        pairs = band_pairs(keys, alive_idx)
        del keys
        if not len(pairs):
            continue
        codes = _distinct(pairs[:, 0] * n + pairs[:, 1])
        del pairs
        for earlier in seen:
            at = np.searchsorted(earlier, codes)
            at[at == len(earlier)] = 0
            codes = codes[earlier[at] != codes]
        if not len(codes):
            continue
        seen.append(codes)
        yield np.stack([codes // n, codes % n], axis=1)


class _SignatureReader:
    """Signature rows by global document index, read from the parts' files (no memory maps)."""

    def __init__(self, parts: list[Part]):
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


PAIRS_PER_CHUNK = 16384  # signatures of at most 2 x 16384 documents (16 MB at 128 x uint32) at a time


def near_duplicates(parts: list[Part], alive: np.ndarray, threshold: float) -> tuple[np.ndarray, int, int]:
    """[docs] bool, True for documents with an earlier near duplicate; and pair counts."""
    bands = int(parts[0].meta["bands"]) if parts else 0
    offsets = np.cumsum([0] + [p.docs for p in parts])

    def column(b):  # band b of the alive documents, part by part
        return lambda mask: np.concatenate(
            [p.band(b)[mask[offsets[k]:offsets[k + 1]]] for k, p in enumerate(parts)])

    reader = _SignatureReader(parts)
    confirmed, candidates = [], 0
    for pairs in _new_pairs_by_band((column(b) for b in range(bands)), alive):  # verified band by band
        candidates += len(pairs)
        for lo in range(0, len(pairs), PAIRS_PER_CHUNK):
            chunk = pairs[lo:lo + PAIRS_PER_CHUNK]
            similar = estimated_jaccard(reader.rows(chunk[:, 0]), reader.rows(chunk[:, 1])) >= threshold
            confirmed.append(chunk[similar])
    confirmed = np.concatenate(confirmed) if confirmed else np.zeros((0, 2), dtype=np.int64)
    uf = _UnionFind(len(alive))
    for i, j in confirmed:
        uf.union(int(i), int(j))
    dup = np.zeros(len(alive), dtype=bool)
    involved = np.unique(confirmed)
    roots = np.array([uf.find(int(i)) for i in involved], dtype=np.int64)
    dup[involved[roots != involved]] = True
    return dup, candidates, len(confirmed)


def deduplicate(parts: list[Part], cfg: DedupConfig, source_names: list[str]) -> tuple[list[np.ndarray], DedupStats]:
    """Per part, a [docs] bool mask of documents to keep, and what was removed."""
    sizes = [p.docs for p in parts]
    n = sum(sizes)
    stats = DedupStats(docs_in=n)
    keep = np.ones(n, dtype=bool)
    if n and cfg.exact:
        dup = exact_duplicates(np.concatenate([p.exact for p in parts]))
        stats.exact_removed = int(dup.sum())
        keep &= ~dup
    exact_keep = keep.copy()
    if n and cfg.near:
        dup, stats.candidate_pairs, stats.confirmed_pairs = near_duplicates(parts, keep, cfg.threshold)
        keep &= ~dup
        stats.near_removed = int((exact_keep & ~keep).sum())
    source = np.concatenate([p.source for p in parts]) if n else np.zeros(0, np.uint8)
    for s, name in enumerate(source_names):
        mine = source == s
        stats.removed_by_source[name] = {
            "exact": int((mine & ~exact_keep).sum()),
            "near": int((mine & exact_keep & ~keep).sum()),
        }
    return np.split(keep, np.cumsum(sizes)[:-1]), stats
