"""Stages 2 and 3 keep nothing per document in memory: checked with tracemalloc (which sees numpy's
allocations; deterministic, unlike RSS), on made-up parts of 16k and 64k documents. The old code
held about 40 bytes a document (token counts, hashes, masks, a union-find parent, shard plans)."""

import gc
import tracemalloc

import numpy as np

from slmkit.data.config import DedupConfig
from slmkit.data.dedup import dedup, doc_flags, exact_dedup
from slmkit.data.dedup.doc_flags import EXACT, NEAR
from slmkit.data.dedup.minhash import MinHasher
from slmkit.data.prepare.document_parts import Part, _PartWriter
from slmkit.data.prepare.shards import plan_shards, write_shard

DOCS_PER_PART = 4096
NEAR_EVERY, EXACT_EVERY = 97, 251  # planted: a copy of an earlier document's signature / text hash


def make_parts(work, n_parts: int, seed: int = 0) -> list[Part]:
    hasher = MinHasher(num_perm=16, bands=4)
    rng = np.random.default_rng(seed)
    parts = []
    for k in range(n_parts):
        n = DOCS_PER_PART
        sig = rng.integers(0, 2**32, size=(n, 16), dtype=np.uint32)
        exact = rng.integers(1, 2**63, size=n, dtype=np.uint64)
        glob = np.arange(n) + k * n
        same = np.flatnonzero((glob % EXACT_EVERY == 0) & (glob > 0))
        exact[same] = exact[same - 1]
        sig[same] = sig[same - 1]
        near = np.flatnonzero((glob % NEAR_EVERY == 0) & (glob > 0))
        sig[near] = sig[near - 1]  # same signature as its predecessor: a near duplicate
        sizes = rng.integers(1, 6, size=n)
        writer = _PartWriter(work / f"part_{k:05d}", ["s"], 16, 4)
        writer.add({"tokens": np.arange(int(sizes.sum()), dtype=np.uint16) % 7, "signatures": sig,
                    "bands": hasher.band_keys(sig), "doc_tokens": sizes.astype(np.int64),
                    "doc_bytes": sizes * 4, "source": np.zeros(n, np.uint8),
                    "split": (rng.random(n) < 0.1).astype(np.uint8), "exact": exact,
                    "clean": {}, "raw_docs": n, "raw_bytes": int(sizes.sum() * 4), "encoder": None})
        writer.close()
        parts.append(Part.load(work / f"part_{k:05d}"))
    return parts


def stages_2_and_3(tmp_path, n_parts: int) -> tuple[int, dict]:
    parts = make_parts(tmp_path / "parts", n_parts)
    (tmp_path / "out").mkdir()
    thresholds = gc.get_threshold()
    gc.set_threshold(50)  # np.load leaves a few KB of cyclic garbage (ast closures): collect it often
    tracemalloc.start()
    try:
        removal, stats = dedup.deduplicate(parts, DedupConfig(threshold=0.9, num_perm=16, bands=4), ["s"],
                                           tmp_path / "dedup")
        tokens = 0
        for split in ("train", "val"):
            for plan in plan_shards(parts, removal, split, 60_000):
                tokens += write_shard(plan, parts, removal, tmp_path / "out", np.dtype(np.uint16))["tokens"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        gc.set_threshold(*thresholds)
    kept = sum(int(p.column("doc_tokens")[removal.keep(k)].sum()) for k, p in enumerate(parts))
    assert tokens == kept
    assert removal.flags.count(EXACT) == stats.exact_removed and removal.flags.count(NEAR) == stats.near_removed
    return peak, stats.as_dict()


def test_dedup_and_shards_memory_does_not_grow_with_documents(tmp_path, monkeypatch):
    # small key ranges, buckets and flag blocks, so both sizes are past them: only the number of documents differs
    monkeypatch.setattr(dedup, "DOCS_PER_SLICE", 4096)
    monkeypatch.setattr(dedup, "PAIRS_PER_CHUNK", 1024)
    monkeypatch.setattr(exact_dedup, "DOCS_PER_BUCKET", 4096)
    monkeypatch.setattr(doc_flags, "CHUNK", 4096)
    monkeypatch.setattr(doc_flags, "MARK_BLOCK", 4096)
    stages_2_and_3(tmp_path / "warm-up", 1)  # first calls allocate once (imports, caches): not per document
    small, small_stats = stages_2_and_3(tmp_path / "small", 4)
    large, large_stats = stages_2_and_3(tmp_path / "large", 16)
    n_small, n_large = 4 * DOCS_PER_PART, 16 * DOCS_PER_PART
    # every planted copy found (exact copies are also near copies of their predecessor)
    for n, stats in ((n_small, small_stats), (n_large, large_stats)):
        assert stats["exact_removed"] == (n - 1) // EXACT_EVERY
        assert stats["near_removed"] == (n - 1) // NEAR_EVERY - (n - 1) // (NEAR_EVERY * EXACT_EVERY)
    # 48k more documents (and 4x the planted copies, about 30 B each while they are flagged) measured
    # 17 KB more: less than one byte a document, so even a bool mask over all documents would fail this
    assert large - small < 1.0 * (n_large - n_small), (small, large)
