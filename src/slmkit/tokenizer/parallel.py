"""Batch encoding over several processes with the pure-Python encoder."""

from __future__ import annotations

import multiprocessing as mp
import os

_worker_tokenizer = None


def _init(tokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _encode(text: str) -> list[int]:
    return _worker_tokenizer.encode(text)


def encode_in_processes(tokenizer, texts: list[str], num_workers: int | None = None) -> list[list[int]]:
    """Same ids as `[tokenizer.encode(t) for t in texts]`, spread over `num_workers` processes."""
    num_workers = num_workers or os.cpu_count() or 1
    if num_workers <= 1 or len(texts) < 64:
        return [tokenizer.encode(t) for t in texts]
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(num_workers, initializer=_init, initargs=(tokenizer,)) as pool:
        return pool.map(_encode, texts, chunksize=max(1, len(texts) // (num_workers * 8)))
