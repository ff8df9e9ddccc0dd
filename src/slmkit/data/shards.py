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
from slmkit.data.manifest import sha256_file


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
        chosen = np.flatnonzero(mask & (part.split == code))
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
        for p in np.unique(plan.part):
            part = parts[p]
            tokens = part.tokens(dtype)
            offsets = np.concatenate(([0], np.cumsum(part.doc_tokens)))
            docs = plan.doc[plan.part == p]
            # one fancy-index gather per part: token positions of the chosen documents
            lengths = part.doc_tokens[docs]
            starts = np.repeat(offsets[docs] - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
            block = np.asarray(tokens[starts + np.arange(int(lengths.sum()))], dtype=dtype).tobytes()
            digest.update(block)
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return {**entry, "sha256": digest.hexdigest(), "reused": False}
