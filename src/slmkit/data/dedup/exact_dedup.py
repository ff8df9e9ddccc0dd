"""Exact duplicates (same hash of normalised text; the first copy stays), found on disk in buckets.

One pass over the parts appends each document's (hash, global index) to the bucket file its hash
falls in (about DOCS_PER_BUCKET documents a bucket); then each bucket alone is sorted by hash
(stably, so the earliest copy comes first) and its later copies are flagged. Equal hashes always
share a bucket, so memory is one part plus one bucket, whatever the number of documents.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slmkit.data.dedup.doc_flags import EXACT, DocFlags
from slmkit.data.dedup.part import DedupPart

DOCS_PER_BUCKET = 1 << 16  # about 1 MB of records a bucket
MAX_BUCKETS = 512  # open files at once; beyond 33M documents buckets grow instead
_RECORD = np.dtype([("hash", "<u8"), ("doc", "<i8")])


def bucket_of(hashes: np.ndarray, buckets: int) -> np.ndarray:
    return ((hashes >> np.uint64(32)) % np.uint64(buckets)).astype(np.int64)


def first_copies(hashes: np.ndarray) -> np.ndarray:
    """[n] bool: True for the first document of each hash (in the given order)."""
    order = np.argsort(hashes, kind="stable")
    ordered = hashes[order]
    first = np.ones(len(hashes), dtype=bool)
    first[order[1:][ordered[1:] == ordered[:-1]]] = False
    return first


def flag_exact_duplicates(parts: list[DedupPart], flags: DocFlags, work: Path) -> int:
    """Flag every copy after the first of the same hash EXACT; returns how many."""
    n = flags.docs
    buckets = min(MAX_BUCKETS, max(1, -(-n // DOCS_PER_BUCKET)))
    work.mkdir(parents=True, exist_ok=True)
    paths = [work / f"exact_{b:04d}.bin" for b in range(buckets)]
    files = [open(p, "wb", buffering=0) for p in paths]  # no 8 KB buffer per bucket: writes are whole arrays
    try:
        for k, part in enumerate(parts):
            hashes = part.column("exact")
            which = bucket_of(hashes, buckets)
            order = np.argsort(which, kind="stable")  # documents stay in order within a bucket
            records = np.empty(len(hashes), dtype=_RECORD)
            records["hash"] = hashes[order]
            records["doc"] = order + flags.offsets[k]
            bounds = np.searchsorted(which[order], np.arange(buckets + 1))
            for b in np.flatnonzero(np.diff(bounds)):
                files[b].write(records[bounds[b]:bounds[b + 1]].tobytes())
    finally:
        for f in files:
            f.close()
    removed = 0
    for path in paths:
        records = np.fromfile(path, dtype=_RECORD)  # parts were written in order: docs ascending
        path.unlink()
        later = records["doc"][~first_copies(records["hash"])]
        flags.mark(later, EXACT)
        removed += len(later)
    return removed
