"""Fixtures for the data tests (every subdirectory): a small BPE tokenizer trained here, a prepared
directory shared by the read-side and preparation tests, and helpers to run prepare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slmkit.config import load_config
from slmkit.data import DataConfig, prepare
from slmkit.data.sources import generate_stories
from slmkit.tokenizer import load_tokenizer, train_bpe_from_texts


@pytest.fixture(scope="session")
def small_tokenizer_dir(tmp_path_factory, tinystories_valid) -> Path:
    """A 512-id byte-level BPE with <|endoftext|>, trained on synthetic and real stories."""
    texts = list(generate_stories(200, seed=123)) + [tinystories_valid.read_text(encoding="utf-8")[:200_000]]
    tok = train_bpe_from_texts(texts, 512)
    path = tmp_path_factory.mktemp("tok")
    tok.save(path)
    return path


@pytest.fixture(scope="session")
def small_tokenizer(small_tokenizer_dir):
    return load_tokenizer(small_tokenizer_dir)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, tinystories_train, small_tokenizer_dir):
    """Real TinyStories (train head) + synthetic stories, mixed, split by hash, in several shards."""
    out = tmp_path_factory.mktemp("prep") / "out"
    manifest = run_prepare(out, small_tokenizer_dir, [
        f"sources={{real: {{kind: files, paths: [{tinystories_train}], limit: 400}}, "
        f"synth: {{kind: synthetic, limit: 300, seed: 3, weight: 0.5}}}}",
        "val_fraction=0.1", "shard_mb=0.1", "workers=2",
    ])
    return out, manifest


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def run_prepare(out_dir: Path, tokenizer_dir: Path, overrides: list[str], config: str | None = None):
    cfg = load_config(DataConfig, config, [f"out_dir={out_dir}", f"tokenizer.path={tokenizer_dir}",
                                           "progress=false", "workers=1", *overrides])
    return prepare(cfg, log=lambda *_: None)


def shard_documents(manifest, split: str, tok) -> list[str]:
    """Decode every shard of a split and cut it at end-of-text: the documents, in order."""
    tokens = np.concatenate([np.asarray(m) for m in manifest.memmaps(split)]) if manifest.memmaps(split) else []
    docs, start = [], 0
    for end in np.flatnonzero(np.asarray(tokens) == manifest.eos_id):
        docs.append(tok.decode(tokens[start:end].tolist()))
        start = end + 1
    assert start == len(tokens), "the last document must end with end-of-text"
    return docs
