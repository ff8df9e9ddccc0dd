"""`prepare(cfg)`: sources -> cleaned, deduplicated, tokenized shards + manifest.json in cfg.out_dir.

    from slmkit.config import load_config
    from slmkit.data.config import DataConfig
    from slmkit.data.prepare import prepare
    manifest = prepare(load_config(DataConfig, "configs/synthetic.yaml", ["out_dir=runs/data"]))

Stages: (1) document parts in worker processes (clean, split, hash, MinHash, tokenize),
(2) dedup over all parts, (3) shards. Work in progress lives in out_dir/.work, keyed by a
hash of the settings, so an interrupted run resumes and a changed config starts afresh.
Every source is opened (and its first document read) before anything is written, so a missing
file or an unreachable hub fails with nothing created.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from slmkit.config import save_config, to_dict
from slmkit.data.clean.cleaning import BatchCleaner, CleanStats
from slmkit.data.config import DataConfig
from slmkit.data.dedup.dedup import deduplicate
from slmkit.data.manifest import FORMAT, MANIFEST, TOKENIZER_COPY, Manifest, manifest_exists, read_manifest
from slmkit.data.prepare.document_parts import SPLITS, build_parts
from slmkit.data.prepare.shards import plan_shards, write_shard
from slmkit.data.prepare.tokenizing import has_tokenizer, load_data_tokenizer, token_dtype, train_tokenizer
from slmkit.data.sources.hub_tokenizer import download_tokenizer
from slmkit.data.sources.mixing import check_sources, mix_sources
from slmkit.errors import DataError
from slmkit.fileio import write_json_atomic

WORK = ".work"
PIPELINE_VERSION = 2  # bump when parts or shards would come out differently for the same settings
SHARD_TOKENS_PER_MB = 2**20 // 4  # about 4 bytes of English text per token for a small BPE


def _settings_hash(cfg: DataConfig, tokenizer_fingerprint: str) -> str:
    """What decides the output: everything but the process count, progress bar and paths."""
    settings = to_dict(cfg)
    for key in ("workers", "progress", "out_dir"):
        settings.pop(key)
    settings["tokenizer"] = {k: v for k, v in settings["tokenizer"].items() if k != "encoder"}  # same ids
    settings["tokenizer_fingerprint"] = tokenizer_fingerprint
    settings["pipeline_version"] = PIPELINE_VERSION
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _ensure_tokenizer(cfg: DataConfig) -> None:
    if has_tokenizer(cfg.tokenizer.path):
        return
    if cfg.tokenizer.hub_id:
        download_tokenizer(cfg.tokenizer.hub_id, cfg.tokenizer.path)
        return
    if not cfg.tokenizer.train_if_missing:
        raise DataError(
            f"no tokenizer in {cfg.tokenizer.path}: train one with 'slm tokenizer train', "
            "set tokenizer.train_if_missing=true, or name a pretrained one with tokenizer.hub_id=ORG/MODEL"
        )
    cleaner = BatchCleaner(cfg.clean)

    def cleaned():
        docs = (text for _, text in mix_sources(cfg.sources, cfg.mix))
        while batch := list(itertools.islice(docs, cfg.batch_docs)):
            yield from cleaner(batch).texts

    train_tokenizer(cfg.tokenizer, cleaned())


def _kept_counts(parts, removal, column: str, values: int) -> list[int]:
    """Documents kept per value of a per-document column (source or split), a part at a time."""
    counts = np.zeros(values, dtype=np.int64)
    for k, p in enumerate(parts):
        counts += np.bincount(p.column(column)[removal.keep(k)], minlength=values)[:values]
    return counts.tolist()


def _kept_by_source_and_split(parts, removal, sources: int) -> np.ndarray:
    """[sources, splits, 2]: documents and tokens kept per source per split (the held-out share of each source)."""
    counts = np.zeros((sources, len(SPLITS), 2), dtype=np.int64)
    for k, p in enumerate(parts):
        keep = removal.keep(k)
        source, split, tokens = p.column("source")[keep], p.column("split")[keep], p.column("doc_tokens")[keep]
        np.add.at(counts, (source, split, 0), 1)
        np.add.at(counts, (source, split, 1), tokens)
    return counts


def _source_report(cfg: DataConfig, parts, removal, dedup) -> dict:
    report = {}
    kept_by_source = _kept_counts(parts, removal, "source", len(cfg.sources))
    kept_by_split = _kept_by_source_and_split(parts, removal, len(cfg.sources))
    for s, (name, src) in enumerate(cfg.sources.items()):
        clean = CleanStats()
        for p in parts:
            if name in p.meta["clean"]:
                clean.add(CleanStats(**p.meta["clean"][name]))
        kept = kept_by_source[s]
        report[name] = {
            "kind": src.kind, "weight": src.weight, "docs_read": clean.docs_in, "chars_read": clean.chars_in,
            "cleaning": clean.as_dict(), "dedup_removed": dedup.removed_by_source.get(name, {}), "docs_kept": kept,
            "splits": {split: {"docs": int(kept_by_split[s, i, 0]), "tokens": int(kept_by_split[s, i, 1])}
                       for i, split in enumerate(SPLITS)},
        }
    return report


def _encoder_use(parts) -> dict:
    """Batches encoded by each encoder (tokenizer.encoder=auto picks per worker by speed)."""
    use: dict[str, int] = {}
    for p in parts:
        for name, n in p.meta.get("encoder", {}).items():
            use[name] = use.get(name, 0) + n
    return use


def prepare(cfg: DataConfig, log=print) -> Manifest:
    """Run the whole pipeline; returns the manifest of the finished shard directory."""
    out = Path(cfg.out_dir)
    started = time.perf_counter()
    check_sources(cfg.sources, cfg.mix)
    _ensure_tokenizer(cfg)
    tok = load_data_tokenizer(cfg.tokenizer.path)
    dtype = token_dtype(tok.vocab_size)
    settings = _settings_hash(cfg, tok.fingerprint())
    if manifest_exists(out):
        existing = read_manifest(out)
        if existing.data.get("settings_hash") == settings:
            log(f"{out} is already prepared with these settings (delete {out / MANIFEST} to rebuild)")
            return existing
    work = out / WORK
    stamp = work / "settings.txt"
    if work.exists() and (not stamp.is_file() or stamp.read_text() != settings):
        log(f"settings changed since the unfinished run in {work}: starting over")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    stamp.write_text(settings)
    workers = cfg.workers or os.cpu_count() or 1

    stages = {"setup": time.perf_counter() - started}
    with tqdm(desc="clean+tokenize", unit="B", unit_scale=True, disable=not cfg.progress) as bar:
        parts = build_parts(cfg, work / "parts", tok, workers, bar)
    stages["parts"] = time.perf_counter() - started - sum(stages.values())
    raw_docs = sum(p.meta["raw_docs"] for p in parts)
    raw_bytes = sum(p.meta["raw_bytes"] for p in parts)
    if raw_docs == 0:
        raise DataError("the sources gave no documents: check the paths, globs and limits in the config")
    removal, dedup = deduplicate(parts, cfg.dedup, list(cfg.sources), work / "dedup")
    stages["dedup"] = time.perf_counter() - started - sum(stages.values())
    kept_train = _kept_counts(parts, removal, "split", len(SPLITS))[SPLITS.index("train")]
    if kept_train == 0:
        raise DataError(
            f"no training documents left from {raw_docs} read: cleaning or dedup removed them all "
            "(loosen the clean.* bounds, or check that the text field and delimiter are right)"
        )

    shard_tokens = max(1, int(cfg.shard_mb * SHARD_TOKENS_PER_MB))
    splits = {}
    plans = {split: plan_shards(parts, removal, split, shard_tokens) for split in SPLITS}
    with tqdm(total=sum(map(len, plans.values())), desc="shards", disable=not cfg.progress) as bar:
        for split, split_plans in plans.items():
            entries = []
            for plan in split_plans:
                entries.append(write_shard(plan, parts, removal, out, dtype))
                bar.update(1)
            splits[split] = {
                "tokens": sum(e["tokens"] for e in entries), "docs": sum(e["docs"] for e in entries), "shards": entries,
            }
    stages["shards"] = time.perf_counter() - started - sum(stages.values())
    tok.save(out / TOKENIZER_COPY)
    save_config(cfg, out / "data_config.yaml")
    elapsed = time.perf_counter() - started
    manifest = {
        "format": FORMAT,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "settings_hash": settings,
        "tokenizer": {"fingerprint": tok.fingerprint(), "vocab_size": tok.vocab_size, "eos_id": tok.eos_id,
                      "source": str(cfg.tokenizer.path), "copy": TOKENIZER_COPY},
        "dtype": dtype.name,
        "splits": splits,
        "input": {"docs": raw_docs, "bytes": raw_bytes, "seconds": round(elapsed, 2),
                  "mb_per_s": round(raw_bytes / 1e6 / max(elapsed, 1e-9), 3),
                  "stage_seconds": {k: round(v, 2) for k, v in stages.items()},
                  "encoder_batches": _encoder_use(parts)},
        "sources": _source_report(cfg, parts, removal, dedup),
        "dedup": dedup.as_dict(),
    }
    write_json_atomic(out / MANIFEST, manifest)
    shutil.rmtree(work, ignore_errors=True)
    return read_manifest(out)
