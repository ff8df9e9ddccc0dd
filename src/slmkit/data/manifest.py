"""manifest.json: what a shard directory holds, and the checks that it is intact and matches a tokenizer.

The only module that knows the file's name and layout; everything else asks here.

    manifest_exists("runs/data")      # True once 'slm prepare' has finished there
    m = read_manifest("runs/data")    # DataError when missing or corrupt
    m.vocab_size, m.dtype, m.eos_id   # the tokenizer's vocabulary, the shards' token dtype, end-of-text id
    tok = m.load_tokenizer()          # the tokenizer the shards were made with (its copy in the directory)
    m.verify("train")                 # DataError when a shard's sha256 differs (corrupt or edited)
    m.check_tokenizer(tok)            # DataError when the ids came from another tokenizer
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slmkit.errors import DataError
from slmkit.fileio import sha256_file
from slmkit.tokenizer import load_tokenizer

MANIFEST = "manifest.json"
FORMAT = "slmkit-token-shards/1"
TOKENIZER_COPY = "tokenizer"  # the directory, next to the shards, holding the tokenizer that made them
_REQUIRED = {"dtype": (), "splits": (), "tokenizer": ("fingerprint", "vocab_size", "eos_id")}


@dataclass
class Manifest:
    directory: Path
    data: dict

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data["dtype"])

    @property
    def eos_id(self) -> int:
        return int(self.data["tokenizer"]["eos_id"])

    @property
    def fingerprint(self) -> str:
        return self.data["tokenizer"]["fingerprint"]

    @property
    def vocab_size(self) -> int:
        """Vocabulary size of the tokenizer the shards were made with (every id is below it)."""
        return int(self.data["tokenizer"]["vocab_size"])

    @property
    def tokenizer_dir(self) -> Path:
        return self.directory / TOKENIZER_COPY

    def load_tokenizer(self):
        """The tokenizer the shards were made with, from its copy in the directory (checked)."""
        tok = load_tokenizer(self.tokenizer_dir)
        self.check_tokenizer(tok)
        return tok

    def shards(self, split: str) -> list[dict]:
        splits = self.data["splits"]
        if split not in splits:
            raise DataError(f"{self.directory}: no '{split}' split (has: {', '.join(splits)})")
        return splits[split]["shards"]

    def split_tokens(self, split: str) -> int:
        """Tokens in `split`; 0 when the directory has no such split."""
        return int(self.data["splits"].get(split, {}).get("tokens", 0))

    def shard_path(self, shard: dict) -> Path:
        return self.directory / shard["file"]

    def verify(self, split: str, checksums: bool = True) -> None:
        """Every shard of `split` exists with the recorded size and (optionally) sha256."""
        for shard in self.shards(split):
            path = self.shard_path(shard)
            if not path.is_file():
                raise DataError(f"shard missing: {path} (run 'slm prepare' again to rebuild it)")
            expected = shard["tokens"] * self.dtype.itemsize
            if path.stat().st_size != expected:
                raise DataError(
                    f"shard {path} has {path.stat().st_size} bytes, the manifest says {expected}: "
                    "it is truncated or corrupt; delete it and run 'slm prepare' again"
                )
            if checksums and sha256_file(path) != shard["sha256"]:
                raise DataError(
                    f"shard {path} is corrupt (sha256 differs from {MANIFEST}); delete it and run 'slm prepare' again"
                )

    def check_tokenizer(self, tokenizer_or_fingerprint) -> None:
        """DataError unless the shards were made with this tokenizer."""
        fp = tokenizer_or_fingerprint
        if not isinstance(fp, str):
            fp = fp.fingerprint()
        if fp != self.fingerprint:
            raise DataError(
                f"tokenizer mismatch: the shards in {self.directory} were made with tokenizer {self.fingerprint}, "
                f"this one is {fp}; use the tokenizer in {self.tokenizer_dir} or re-run 'slm prepare'"
            )

    def memmaps(self, split: str) -> list[np.ndarray]:
        return [np.memmap(self.shard_path(s), dtype=self.dtype, mode="r") for s in self.shards(split) if s["tokens"]]


def manifest_exists(directory: str | os.PathLike) -> bool:
    """Whether `directory` holds a finished shard directory's manifest (it may still be corrupt:
    `read_manifest` checks)."""
    return (Path(directory) / MANIFEST).is_file()


def read_manifest(directory: str | os.PathLike) -> Manifest:
    """The manifest of a prepared shard directory; DataError when it is missing or corrupt."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise DataError(f"no {MANIFEST} in {directory}: prepare the data first with 'slm prepare CONFIG'")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"{path} is not valid JSON; re-run 'slm prepare'") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise DataError(f"{path}: unknown format {found!r} (expected {FORMAT})")
    for key, fields in _REQUIRED.items():
        section = data.get(key)
        absent = [key] if section is None else [f"{key}.{f}" for f in fields if f not in section]
        if absent:
            raise DataError(f"{path} is corrupt (no '{absent[0]}'); delete it and run 'slm prepare' again")
    return Manifest(directory, data)
