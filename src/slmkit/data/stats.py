"""`data_stats(dir)`: what a prepared shard directory holds (tokens, documents, lengths, top tokens)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slmkit.data.manifest import read_manifest

HISTOGRAM_EDGES = [0, 32, 64, 128, 192, 256, 384, 512, 1024, 2048, 4096]


def data_stats(directory: str | Path, top: int = 20, verify: bool = True) -> dict:
    """Per split: tokens, documents, a document-length histogram (tokens), the most frequent ids."""
    manifest = read_manifest(directory)
    eos = manifest.eos_id
    vocab = manifest.vocab_size
    report = {"dtype": manifest.dtype.name, "tokenizer": manifest.fingerprint, "splits": {}}
    for split in manifest.data["splits"]:
        manifest.verify(split, checksums=verify)
        counts = np.zeros(vocab, dtype=np.int64)
        histogram = np.zeros(len(HISTOGRAM_EDGES), dtype=np.int64)
        tokens = docs = 0
        for shard in manifest.memmaps(split):
            counts += np.bincount(shard, minlength=vocab)[:vocab]
            ends = np.flatnonzero(shard == eos)
            lengths = np.diff(np.concatenate(([-1], ends)))  # tokens per document, its end-of-text included
            histogram += np.bincount(np.searchsorted(HISTOGRAM_EDGES, lengths, side="right") - 1,
                                     minlength=len(HISTOGRAM_EDGES))
            tokens += len(shard)
            docs += len(ends)
        top_ids = np.argsort(counts)[::-1][:top]
        report["splits"][split] = {
            "tokens": tokens, "docs": docs, "shards": len(manifest.shards(split)),
            "mean_doc_tokens": tokens / docs if docs else 0.0,
            "histogram": {f">={edge}": int(n) for edge, n in zip(HISTOGRAM_EDGES, histogram)},
            "top_tokens": [(int(i), int(counts[i])) for i in top_ids if counts[i]],
        }
    return report
