"""Stage 1 of `slm prepare`: stream documents, clean, hash, MinHash and tokenize them in worker
processes, and store the results in "parts" (fixed runs of input documents) under out_dir/.work.

Workers take batches of documents and run everything vectorised over the batch: one word split
shared by the cleaning rules and MinHash, numpy for the n-gram rules and the signatures, and one
tokenizer call. The main process reads the sources, hands out batches and appends each result to
the part being written (results come back in order), so it holds a few batches, never a part.

A part is written to a temporary directory and renamed when complete, so an interrupted run
resumes at the first missing part. Parts keep every cleaned document; dedup (stage 2) decides
which ones reach the shards (stage 3), so tokenizing, the expensive step, runs once.

Files of a part: tokens.bin (the token dtype), signatures.bin ([docs, num_perm] uint32),
bands.bin ([bands, docs] uint64: one band is one contiguous read), and small per-document arrays
(.npy). Stages 2 and 3 read them with plain file reads, or map one part's file at a time, so the
pages they touch do not add up in the process's memory; a `Part` holds only its path and meta,
so nothing in the main process grows with the number of documents.
"""

from __future__ import annotations

import collections
import itertools
import json
import multiprocessing as mp
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slmkit.data.clean.cleaning import BatchCleaner, CleanStats
from slmkit.data.config import DataConfig
from slmkit.data.dedup.minhash import MinHasher, lsh_bands
from slmkit.data.heap import trim_heap
from slmkit.data.prepare.tokenizing import BatchEncoder, load_data_tokenizer, token_dtype
from slmkit.data.sources.mixing import document_hash, mix_sources, split_of
from slmkit.fileio import publish_directory, temporary_sibling

SPLITS = ("train", "val")
BATCHES_PER_PART = 64
_SMALL = ("doc_tokens", "doc_bytes", "source", "split", "exact")  # per-document arrays kept as .npy


def utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


@dataclass
class Part:
    """One finished part: its meta in memory; its per-document arrays are read from disk when asked
    for (one part at a time), never kept, so holding every Part costs memory per part, not per document.
    Per-document arrays (`column`): doc_tokens [docs] int64 (tokens including the trailing
    end-of-text), doc_bytes int64, source uint8 (index into the config's sources), split uint8
    (index into SPLITS), exact uint64 (hash of the normalised text)."""

    path: Path
    meta: dict

    @classmethod
    def load(cls, path: Path) -> "Part":
        return cls(path=path, meta=json.loads((path / "part.json").read_text()))

    @property
    def docs(self) -> int:
        return int(self.meta["docs"])

    def column(self, name: str) -> np.ndarray:
        """[docs] per-document array `name` (one of _SMALL), read from the part's .npy file."""
        if name not in _SMALL:
            raise KeyError(name)
        return np.load(self.path / f"{name}.npy")

    def read_tokens(self, dtype: np.dtype, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) of the part's token stream."""
        with open(self.path / "tokens.bin", "rb") as f:
            return np.fromfile(f, dtype=dtype, count=stop - start, offset=start * dtype.itemsize)

    def band(self, b: int) -> np.ndarray:
        """[docs] uint64 LSH keys of band b."""
        with open(self.path / "bands.bin", "rb") as f:
            return np.fromfile(f, dtype=np.uint64, count=self.docs, offset=b * self.docs * 8)

    def signature_rows(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows), num_perm] uint32 signatures of the given documents. The file is mapped only
        for the duration of the call, so at most one part's signatures count towards memory."""
        width = int(self.meta["num_perm"])
        if not len(rows):
            return np.empty((0, width), dtype=np.uint32)
        mapped = np.memmap(self.path / "signatures.bin", dtype=np.uint32, mode="r", shape=(self.docs, width))
        try:
            return mapped[rows].view(np.ndarray)
        finally:
            mapped._mmap.close()
            del mapped


# --- worker side -------------------------------------------------------------------------------

_worker: dict = {}


def _init_worker(cfg: DataConfig, tokenizer) -> None:
    """`tokenizer`: a loaded tokenizer (inherited by forked workers at no cost) or its path."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one thread per worker process
    d = cfg.dedup
    tok = load_data_tokenizer(tokenizer) if isinstance(tokenizer, (str, os.PathLike)) else tokenizer
    _worker.update(
        cfg=cfg, tok=tok, dtype=token_dtype(tok.vocab_size), cleaner=BatchCleaner(cfg.clean),
        encoder=BatchEncoder(tok, cfg.tokenizer.encoder),
        minhash=MinHasher(d.num_perm, lsh_bands(d), d.shingle_words, d.seed),
        forced_split=[s.split for s in cfg.sources.values()],
    )


def _process_batch(batch: list[tuple[int, str]]) -> dict:
    """Clean, split, hash, MinHash and tokenize one batch of (source index, text)."""
    cfg: DataConfig = _worker["cfg"]
    cleaner: BatchCleaner = _worker["cleaner"]
    raw = [text for _, text in batch]
    cleaned = cleaner(raw)
    stats: dict[int, CleanStats] = {}
    for (source, text), reason, clean in zip(batch, cleaned.reasons, cleaned.normalized):
        stats.setdefault(source, CleanStats()).count(len(text), len(clean), reason)
    texts = cleaned.texts
    sources, splits, exact = [], [], []
    forced = _worker["forced_split"]
    for i, text in zip(cleaned.index, texts):
        source = batch[i][0]
        digest = document_hash(text)
        split = split_of(digest, cfg.val_fraction) if forced[source] == "auto" else forced[source]
        sources.append(source)
        splits.append(SPLITS.index(split))
        exact.append(int.from_bytes(digest[:8], "little"))
    encoder: BatchEncoder = _worker["encoder"]
    encoder.last = None
    ids = encoder(texts) if texts else []
    minhash: MinHasher = _worker["minhash"]
    signatures = minhash.signatures_of_words(cleaned.words)
    doc_tokens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    return {
        "raw_docs": len(batch),
        "raw_bytes": sum(utf8_len(t) for t in raw),
        "tokens": np.fromiter(itertools.chain.from_iterable(ids), dtype=_worker["dtype"], count=int(doc_tokens.sum())),
        "doc_tokens": doc_tokens,
        "doc_bytes": np.fromiter(map(utf8_len, texts), dtype=np.int64, count=len(texts)),
        "source": np.array(sources, dtype=np.uint8),
        "split": np.array(splits, dtype=np.uint8),
        "exact": np.array(exact, dtype=np.uint64),
        "signatures": signatures,
        "bands": minhash.band_keys(signatures),
        "clean": {s: c.as_dict() for s, c in stats.items()},
        "encoder": encoder.last,
    }


# --- main process ------------------------------------------------------------------------------

def _batches(docs: Iterable[tuple[str, str]], names: list[str], batch_docs: int) -> Iterator[list[tuple[int, str]]]:
    index = {name: i for i, name in enumerate(names)}
    batch: list[tuple[int, str]] = []
    for name, text in docs:
        batch.append((index[name], text))
        if len(batch) == batch_docs:
            yield batch
            batch = []
    if batch:
        yield batch


class _PartWriter:
    """Appends batch results to a part's staging directory; `close` finishes and renames it."""

    def __init__(self, path: Path, source_names: list[str], num_perm: int, bands: int):
        self.path, self.names = path, source_names
        self.staging = temporary_sibling(path)
        self.files = {k: open(self.staging / f, "wb") for k, f in
                      (("tokens", "tokens.bin"), ("signatures", "signatures.bin"), ("bands", "bands_by_doc.bin"))}
        self.small: dict[str, list[np.ndarray]] = {k: [] for k in _SMALL}
        self.clean: dict[str, CleanStats] = {}
        self.meta = {"raw_docs": 0, "raw_bytes": 0, "docs": 0, "num_perm": num_perm, "bands": bands,
                     "encoder": {}}

    def add(self, r: dict) -> None:
        for key, f in self.files.items():
            f.write(np.ascontiguousarray(r[key]).tobytes())
        for key in _SMALL:
            self.small[key].append(r[key])
        for source, stats in r["clean"].items():
            self.clean.setdefault(self.names[source], CleanStats()).add(CleanStats(**stats))
        self.meta["raw_docs"] += r["raw_docs"]
        self.meta["raw_bytes"] += r["raw_bytes"]
        self.meta["docs"] += len(r["exact"])
        if r["encoder"]:
            self.meta["encoder"][r["encoder"]] = self.meta["encoder"].get(r["encoder"], 0) + 1

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        for key, arrays in self.small.items():
            np.save(self.staging / f"{key}.npy", np.concatenate(arrays))
        docs, bands = self.meta["docs"], self.meta["bands"]
        by_doc = np.fromfile(self.staging / "bands_by_doc.bin", dtype=np.uint64).reshape(docs, bands)
        np.ascontiguousarray(by_doc.T).tofile(self.staging / "bands.bin")  # [bands, docs]
        (self.staging / "bands_by_doc.bin").unlink()
        self.meta["clean"] = {name: s.as_dict() for name, s in self.clean.items()}
        (self.staging / "part.json").write_text(json.dumps(self.meta))
        publish_directory(self.staging, self.path)


def build_parts(cfg: DataConfig, work_dir: Path, tokenizer, workers: int, progress,
                docs: Iterable[tuple[str, str]] | None = None) -> list[Part]:
    """Run stage 1 over all sources (or the given (source name, text) stream); parts already on
    disk are kept (their input is read and skipped). `tokenizer`: a loaded tokenizer or its path."""
    work_dir.mkdir(parents=True, exist_ok=True)
    names = list(cfg.sources)
    num_perm, bands = cfg.dedup.num_perm, lsh_bands(cfg.dedup)
    parts: list[Path] = []
    pool = None
    in_flight: collections.deque = collections.deque()
    writer: list[_PartWriter | None] = [None]

    def part_path(batch_index: int) -> Path:
        return work_dir / f"part_{batch_index // BATCHES_PER_PART:05d}"

    def finish(result: dict, batch_index: int) -> None:
        # results arrive in order: batch_index decides the part
        if writer[0] is None:
            writer[0] = _PartWriter(part_path(batch_index), names, num_perm, bands)
        writer[0].add(result)
        progress.update(result["raw_bytes"])
        if batch_index % BATCHES_PER_PART == BATCHES_PER_PART - 1:
            writer[0].close()
            writer[0] = None
            trim_heap()  # else glibc's held free memory grows with the corpus

    stream = docs if docs is not None else mix_sources(cfg.sources, cfg.mix)
    try:
        if workers > 1:
            pool = mp.get_context("fork" if os.name == "posix" else "spawn").Pool(
                workers, initializer=_init_worker, initargs=(cfg, tokenizer)
            )
        else:
            _init_worker(cfg, tokenizer)
        for index, batch in enumerate(_batches(stream, names, cfg.batch_docs)):
            if index % BATCHES_PER_PART == 0:
                parts.append(part_path(index))
            if parts[-1].exists():  # finished in an earlier run
                progress.update(sum(utf8_len(t) for _, t in batch))
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
        if writer[0] is not None:
            writer[0].close()
            writer[0] = None
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        _worker.clear()
    return [Part.load(p) for p in parts]
