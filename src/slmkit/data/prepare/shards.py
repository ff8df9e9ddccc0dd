"""Stage 3 of `slm prepare`: copy the kept documents' tokens from the parts into shards.

The shard plan (which documents go to which shard) follows from the parts and dedup's keep masks
alone, so a re-run knows every shard's size in advance and skips shards already on disk. Each
shard is written under a temporary name and renamed when complete. A shard holds whole
documents, each followed by end-of-text, and grows until it reaches `shard_tokens`.
A plan is the span of kept documents between two positions (part, document), not a list of them,
and both planning and writing read one part's arrays at a time: memory does not grow with the
number of documents.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slmkit.data.prepare.document_parts import SPLITS, Part
from slmkit.fileio import atomic_file, sha256_file


@dataclass
class ShardPlan:
    """One shard: the chosen documents (kept, of its split) from (first part, first document) to
    (last part, last document), both included, in order."""

    file: str
    split: str
    first: tuple[int, int]
    last: tuple[int, int]
    docs: int
    tokens: int


def _chosen(part: Part, keep: np.ndarray, code: int) -> np.ndarray:
    """Indices of the part's documents that go to split `code`."""
    return np.flatnonzero(keep & (part.column("split") == code))


def plan_shards(parts: list[Part], removal, split: str, shard_tokens: int) -> list[ShardPlan]:
    """Shards of `split`, filled in document order: a shard takes documents while its tokens stay
    <= shard_tokens (at least one document). `removal.keep(k)`: part k's keep mask."""
    code = SPLITS.index(split)
    plans: list[ShardPlan] = []
    first = last = None
    docs = tokens = 0

    def close() -> None:
        nonlocal first, docs, tokens
        plans.append(ShardPlan(f"{split}_{len(plans):05d}.bin", split, first, last, docs, tokens))
        first, docs, tokens = None, 0, 0

    for k, part in enumerate(parts):
        chosen = _chosen(part, removal.keep(k), code)
        ends = np.cumsum(part.column("doc_tokens")[chosen])
        i = 0
        while i < len(chosen):
            before = int(ends[i - 1]) if i else 0
            j = int(np.searchsorted(ends, before + shard_tokens - tokens, side="right"))  # these fit
            if j == i:
                if docs:  # the next document does not fit: a new shard
                    close()
                    continue
                j = i + 1  # a document larger than a shard gets one of its own
            if first is None:
                first = (k, int(chosen[i]))
            last = (k, int(chosen[j - 1]))
            docs += j - i
            tokens += int(ends[j - 1]) - before
            i = j
            if i < len(chosen):
                close()
    if docs:
        close()
    return plans


def write_shard(plan: ShardPlan, parts: list[Part], removal, out_dir: Path, dtype: np.dtype) -> dict:
    """Write one shard (unless it is already complete) and return its manifest entry."""
    final = out_dir / plan.file
    entry = {"file": plan.file, "tokens": plan.tokens, "docs": plan.docs}
    if final.is_file() and final.stat().st_size == plan.tokens * dtype.itemsize:
        return {**entry, "sha256": sha256_file(final), "reused": True}
    code = SPLITS.index(plan.split)
    digest = hashlib.sha256()
    with atomic_file(final) as tmp, open(tmp, "wb") as f:
        for k in range(plan.first[0], plan.last[0] + 1):
            part = parts[k]
            chosen = _chosen(part, removal.keep(k), code)
            lo = plan.first[1] if k == plan.first[0] else 0
            hi = plan.last[1] if k == plan.last[0] else part.docs
            chosen = chosen[(chosen >= lo) & (chosen <= hi)]
            for block in _part_blocks(part, chosen, dtype):
                digest.update(block)
                f.write(block)
        f.flush()
        os.fsync(f.fileno())
    return {**entry, "sha256": digest.hexdigest(), "reused": False}


BLOCK_TOKENS = 1 << 20  # tokens read at a time (a document longer than this is read whole)


def _part_blocks(part: Part, docs: np.ndarray, dtype: np.dtype):
    """The tokens of documents `docs` (ascending) of one part, as bytes, in blocks of about
    BLOCK_TOKENS: each block is one read of a span of the part's tokens, minus the documents
    that are not chosen (removed by dedup or in the other split)."""
    doc_tokens = part.column("doc_tokens")
    offsets = np.zeros(part.docs + 1, dtype=np.int64)
    np.cumsum(doc_tokens, out=offsets[1:])
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
            yield span[np.repeat(chosen, doc_tokens[first:last + 1])].tobytes()
        i = j
