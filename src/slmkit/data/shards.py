"""Stage 3 of `slm prepare`: copy the kept documents' tokens from the parts into shards.

The shard plan (which documents go to which shard) follows from the parts and the keep masks
alone, so a re-run knows every shard's size in advance and skips shards already on disk. Each
shard is written under a temporary name and renamed when complete. A shard holds whole
documents, each followed by end-of-text, and grows until it reaches `shard_tokens`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slmkit.data.document_parts import SPLITS, Part
from slmkit.fileio import sha256_file


@dataclass
class ShardPlan:
    """One shard: documents `doc` of parts `part` (parallel arrays), in order."""

    file: str
    part: np.ndarray
    doc: np.ndarray
    tokens: int

    @property
    def docs(self) -> int:
        return len(self.doc)


def plan_shards(parts: list[Part], keep: list[np.ndarray], split: str, shard_tokens: int) -> list[ShardPlan]:
    code = SPLITS.index(split)
    part_ids, doc_ids, sizes = [], [], []
    for p, (part, mask) in enumerate(zip(parts, keep)):
        chosen = np.flatnonzero(mask & (part.split == code)).astype(np.int32)
        part_ids.append(np.full(len(chosen), p, dtype=np.int32))
        doc_ids.append(chosen)
        sizes.append(part.doc_tokens[chosen])
    part_of, doc_of, size = (np.concatenate(a) if a else np.zeros(0, np.int64) for a in (part_ids, doc_ids, sizes))
    plans, start = [], 0
    ends = np.cumsum(size)
    while start < len(size):
        before = ends[start - 1] if start else 0
        stop = max(int(np.searchsorted(ends, before + shard_tokens, side="right")), start + 1)
        plans.append(ShardPlan(
            f"{split}_{len(plans):05d}.bin", part_of[start:stop], doc_of[start:stop], int(ends[stop - 1] - before)
        ))
        start = stop
    return plans


def write_shard(plan: ShardPlan, parts: list[Part], out_dir: Path, dtype: np.dtype) -> dict:
    """Write one shard (unless it is already complete) and return its manifest entry."""
    final = out_dir / plan.file
    entry = {"file": plan.file, "tokens": plan.tokens, "docs": plan.docs}
    if final.is_file() and final.stat().st_size == plan.tokens * dtype.itemsize:
        return {**entry, "sha256": sha256_file(final), "reused": True}
    tmp = final.with_name(final.name + ".tmp")
    digest = hashlib.sha256()
    with open(tmp, "wb") as f:
        bounds = np.flatnonzero(np.diff(plan.part)) + 1  # plan.part is sorted: one run per part
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(plan.part)]):
            if hi == lo:
                continue
            for block in _part_blocks(parts[int(plan.part[lo])], plan.doc[lo:hi], dtype):
                digest.update(block)
                f.write(block)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return {**entry, "sha256": digest.hexdigest(), "reused": False}


BLOCK_TOKENS = 1 << 20  # tokens read at a time (a document longer than this is read whole)


def _part_blocks(part: Part, docs: np.ndarray, dtype: np.dtype):
    """The tokens of documents `docs` (ascending) of one part, as bytes, in blocks of about
    BLOCK_TOKENS: each block is one read of a span of the part's tokens, minus the documents
    that are not chosen (removed by dedup or in the other split)."""
    offsets = np.zeros(part.docs + 1, dtype=np.int64)
    np.cumsum(part.doc_tokens, out=offsets[1:])
    ends = offsets[docs.astype(np.int64) + 1]
    i = 0
    while i < len(docs):
        first = int(docs[i])
        j = max(i + 1, int(np.searchsorted(ends, offsets[first] + BLOCK_TOKENS, side="right")))
        last = int(docs[j - 1])
        span = part.read_tokens(dtype, int(offsets[first]), int(offsets[last + 1]))
        if last - first == j - 1 - i:  # consecutive documents: the span is the block
            yield span.tobytes()
        else:
            chosen = np.zeros(last - first + 1, dtype=bool)
            chosen[docs[i:j] - first] = True
            yield span[np.repeat(chosen, part.doc_tokens[first:last + 1])].tobytes()
        i = j
