"""Stage 1 of `slm prepare`: stream documents, clean, hash, MinHash and tokenize them in worker
processes, and store the results in "parts" (fixed runs of input documents) under out_dir/.work.

A part is written to a temporary directory and renamed when complete, so an interrupted run
resumes at the first missing part. Parts keep every cleaned document; dedup (stage 2) decides
which ones reach the shards (stage 3), so tokenizing, the expensive step, runs once.
"""

from __future__ import annotations

import collections
import json
import multiprocessing as mp
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slmkit.data.cleaning import CleanStats, DocumentCleaner
from slmkit.data.config import DataConfig
from slmkit.data.minhash import MinHasher
from slmkit.data.mixing import document_hash, mix_sources, split_of
from slmkit.data.tokenizing import encode_documents, load_data_tokenizer, token_dtype

SPLITS = ("train", "val")
BATCHES_PER_PART = 64


@dataclass
class Part:
    """The arrays of one finished part (one row per cleaned document)."""

    path: Path
    doc_tokens: np.ndarray  # [docs] int64, tokens including the trailing end-of-text
    doc_bytes: np.ndarray  # [docs] int64, UTF-8 bytes of the cleaned text
    source: np.ndarray  # [docs] uint8, index into the config's sources
    split: np.ndarray  # [docs] uint8, index into SPLITS
    exact: np.ndarray  # [docs] uint64, hash of the normalised text
    meta: dict

    @classmethod
    def load(cls, path: Path) -> "Part":
        arrays = {k: np.load(path / f"{k}.npy") for k in ("doc_tokens", "doc_bytes", "source", "split", "exact")}
        return cls(path=path, meta=json.loads((path / "part.json").read_text()), **arrays)

    def tokens(self, dtype: np.dtype) -> np.ndarray:
        return np.memmap(self.path / "tokens.bin", dtype=dtype, mode="r") if self.doc_tokens.sum() else np.zeros(0, dtype)

    def signatures(self) -> np.ndarray:
        return np.load(self.path / "signatures.npy", mmap_mode="r")

    def band_keys(self) -> np.ndarray:
        return np.load(self.path / "bands.npy", mmap_mode="r")


# --- worker side -------------------------------------------------------------------------------

_worker: dict = {}


def _init_worker(cfg: DataConfig, tokenizer_path: str) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one thread per worker process
    d = cfg.dedup
    _worker.update(
        cfg=cfg, tok=load_data_tokenizer(tokenizer_path), cleaners={},
        minhash=MinHasher(d.num_perm, d.lsh_bands(), d.shingle_words, d.seed),
        forced_split=[s.split for s in cfg.sources.values()],
    )


def _process_batch(batch: list[tuple[int, str]]) -> dict:
    """Clean, split, hash and tokenize one batch of (source index, text)."""
    cfg: DataConfig = _worker["cfg"]
    cleaners: dict[int, DocumentCleaner] = _worker["cleaners"]
    texts, sources, splits, exact = [], [], [], []
    for source, raw in batch:
        cleaner = cleaners.setdefault(source, DocumentCleaner(cfg.clean))
        text = cleaner(raw)
        if text is None:
            continue
        digest = document_hash(text)
        forced = _worker["forced_split"][source]
        split = split_of(digest, cfg.val_fraction) if forced == "auto" else forced
        texts.append(text)
        sources.append(source)
        splits.append(SPLITS.index(split))
        exact.append(int.from_bytes(digest[:8], "little"))
    tok = _worker["tok"]
    dtype = token_dtype(tok.vocab_size)
    ids = encode_documents(tok, texts) if texts else []
    stats = {s: c.stats.as_dict() for s, c in cleaners.items()}
    for c in cleaners.values():
        c.stats = CleanStats()
    minhash: MinHasher = _worker["minhash"]
    signatures = minhash.signatures(texts)
    return {
        "raw_docs": len(batch),
        "tokens": np.fromiter((i for doc in ids for i in doc), dtype=dtype, count=sum(map(len, ids))),
        "doc_tokens": np.array([len(d) for d in ids], dtype=np.int64),
        "doc_bytes": np.array([len(t.encode("utf-8")) for t in texts], dtype=np.int64),
        "raw_bytes": sum(len(raw.encode("utf-8")) for _, raw in batch),
        "source": np.array(sources, dtype=np.uint8),
        "split": np.array(splits, dtype=np.uint8),
        "exact": np.array(exact, dtype=np.uint64),
        "signatures": signatures,
        "bands": minhash.band_keys(signatures),
        "clean": stats,
    }


# --- main process ------------------------------------------------------------------------------

def _batches(cfg: DataConfig) -> Iterator[list[tuple[int, str]]]:
    names = list(cfg.sources)
    batch: list[tuple[int, str]] = []
    for name, text in mix_sources(cfg.sources, cfg.mix):
        batch.append((names.index(name), text))
        if len(batch) == cfg.batch_docs:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_part(path: Path, results: list[dict], source_names: list[str]) -> None:
    staging = path.with_name(path.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with open(staging / "tokens.bin", "wb") as f:
        for r in results:
            f.write(r["tokens"].tobytes())
    for key in ("doc_tokens", "doc_bytes", "source", "split", "exact", "signatures", "bands"):
        np.save(staging / f"{key}.npy", np.concatenate([r[key] for r in results]))
    clean: dict[str, CleanStats] = {}
    for r in results:
        for source, stats in r["clean"].items():
            total = clean.setdefault(source_names[source], CleanStats())
            total.add(CleanStats(**stats))
    meta = {
        "raw_docs": sum(r["raw_docs"] for r in results),
        "raw_bytes": sum(r["raw_bytes"] for r in results),
        "clean": {name: s.as_dict() for name, s in clean.items()},
    }
    (staging / "part.json").write_text(json.dumps(meta))
    staging.rename(path)


def build_parts(cfg: DataConfig, work_dir: Path, tokenizer_path: str, workers: int, progress) -> list[Part]:
    """Run stage 1 over all sources; parts already on disk are kept (their input is skipped)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    names = list(cfg.sources)
    parts: list[Path] = []
    pending: list[dict] = []
    pool = None
    in_flight: collections.deque = collections.deque()

    def part_path(batch_index: int) -> Path:
        return work_dir / f"part_{batch_index // BATCHES_PER_PART:05d}"

    def finish(result: dict, batch_index: int) -> None:
        # results arrive in order, so `pending` always holds the batches of one part
        pending.append(result)
        progress.update(result["raw_bytes"])
        if len(pending) == BATCHES_PER_PART:
            _write_part(part_path(batch_index), pending, names)
            pending.clear()

    try:
        if workers > 1:
            pool = mp.get_context("fork" if os.name == "posix" else "spawn").Pool(
                workers, initializer=_init_worker, initargs=(cfg, tokenizer_path)
            )
        else:
            _init_worker(cfg, tokenizer_path)
        last = -1
        for index, batch in enumerate(_batches(cfg)):
            last = index
            if index % BATCHES_PER_PART == 0:
                parts.append(part_path(index))
            if parts[-1].exists():  # finished in an earlier run
                progress.update(sum(len(t.encode("utf-8")) for _, t in batch))
                continue
            if pool is None:
                finish(_process_batch(batch), index)
                continue
            in_flight.append((index, pool.apply_async(_process_batch, (batch,))))
            while len(in_flight) >= 2 * workers:  # bounded: the reader never runs far ahead
                done, result = in_flight.popleft()
                finish(result.get(), done)
        while in_flight:
            done, result = in_flight.popleft()
            finish(result.get(), done)
        if pending:
            _write_part(part_path(last), pending, names)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        _worker.clear()
    return [Part.load(p) for p in parts]
