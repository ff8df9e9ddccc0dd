"""The tokenizer side of data preparation: load or train it, pick the shard dtype, encode batches."""

from __future__ import annotations

import importlib.util
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from slmkit.data.config import TokenizerConfig
from slmkit.errors import DataError
from slmkit.fileio import atomic_directory
from slmkit.tokenizer import load_tokenizer, train_bpe

EOS_TOKEN = "<|endoftext|>"
UINT16_MAX_VOCAB = 65_535


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits with room to spare (vocab <= 65,535), else uint32."""
    if vocab_size <= 0:
        raise DataError(f"invalid vocabulary size {vocab_size}")
    return np.dtype(np.uint16) if vocab_size <= UINT16_MAX_VOCAB else np.dtype(np.uint32)


def load_data_tokenizer(path: str | Path):
    """A tokenizer with an end-of-text id (documents are separated by it in the shards)."""
    tok = load_tokenizer(path)
    if tok.eos_id is None:
        raise DataError(f"the tokenizer in {path} has no {EOS_TOKEN} token to separate documents")
    return tok


def has_tokenizer(path: str | Path) -> bool:
    path = Path(path)
    return (path / "tokenizer.json").is_file() or (path / "encoder.json").is_file() or (
        path.is_file() and path.suffix == ".json"
    )


def train_tokenizer(cfg: TokenizerConfig, texts: Iterable[str]) -> None:
    """Train a byte-level BPE on up to `cfg.train_sample_mb` of (cleaned) text and save it to `cfg.path`."""
    budget = int(cfg.train_sample_mb * 1e6)
    out = Path(cfg.path)
    with tempfile.TemporaryDirectory(prefix="slm-tok-") as tmp:
        sample = Path(tmp) / "sample.txt"
        written = 0
        with open(sample, "w", encoding="utf-8") as f:
            for text in texts:
                f.write(text)
                f.write(EOS_TOKEN)
                written += len(text)
                if written >= budget:
                    break
        if written == 0:
            raise DataError("no documents left after cleaning to train the tokenizer on")
        tok = train_bpe([sample], cfg.vocab_size, special_tokens=[EOS_TOKEN])
    with atomic_directory(out) as staging:
        tok.save(staging)


ENCODERS = ("auto", "fast", "python")


class BatchEncoder:
    """Encode batches of documents (each followed by end-of-text) with the faster of the tokenizer's
    two encoders, which give identical ids (the tokenizer's tests check it):

    - "fast": `tok.encode_batch`, the Rust `tokenizers` library on the same vocabulary and merges;
    - "python": `tok.encode` per document, slmkit's own encoder, whose pre-token cache makes it
      quicker on text that keeps repeating the same words (stories), slower on open vocabularies;
    - "auto": slmkit's encoder for the first `PROBE_AFTER` batches (small runs never build the
      Rust tokenizer), then time the Rust one on a batch (CPU time per byte) and use the quicker,
      timing the other again every `RETRY` batches in case the text changes.
    """

    PROBE_AFTER = 8
    RETRY = 64

    def __init__(self, tok, mode: str = "auto"):
        if mode not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {mode!r}")
        if mode != "python" and importlib.util.find_spec("tokenizers") is None:
            mode = "python"  # no `tokenizers` library
        self.tok, self.mode = tok, mode
        self.seconds_per_byte: dict[str, float] = {}
        self.calls = 0
        self.last: str | None = None  # the encoder of the latest call

    def choose(self) -> str:
        if self.mode != "auto":
            return self.mode
        if self.calls < self.PROBE_AFTER:
            return "python"
        if self.calls == self.PROBE_AFTER:
            return "fast"
        best = min(self.seconds_per_byte, key=self.seconds_per_byte.get)
        if self.calls % self.RETRY == 0:
            return "fast" if best == "python" else "python"
        return best

    def __call__(self, texts: list[str]) -> list[list[int]]:
        how = self.choose()
        started = time.process_time()
        if how == "fast":
            encoded = self.tok.encode_batch(texts)
        else:
            encoded = [self.tok.encode(t) for t in texts]
        spent = time.process_time() - started
        size = sum(map(len, texts))
        if size and self.mode == "auto":
            rate = spent / size
            old = self.seconds_per_byte.get(how)
            # python's first batches fill its cache: its rate is the latest one before the probe
            fresh = old is None or (how == "python" and self.calls < self.PROBE_AFTER)
            self.seconds_per_byte[how] = rate if fresh else 0.5 * (old + rate)
        self.calls += 1
        self.last = how
        eos = self.tok.eos_id
        for ids in encoded:
            ids.append(eos)
        return encoded
