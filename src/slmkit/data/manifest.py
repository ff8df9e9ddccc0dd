"""manifest.json: what a shard directory holds, and the checks that it is intact and matches a tokenizer.

    m = read_manifest("runs/data")
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

MANIFEST = "manifest.json"
FORMAT = "slmkit-token-shards/1"


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

    def shards(self, split: str) -> list[dict]:
        splits = self.data["splits"]
        if split not in splits:
            raise DataError(f"{self.directory}: no '{split}' split (has: {', '.join(splits)})")
        return splits[split]["shards"]

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
                    f"shard {path} is corrupt (sha256 differs from manifest.json); delete it and run 'slm prepare' again"
                )

    def check_tokenizer(self, tokenizer_or_fingerprint) -> None:
        """DataError unless the shards were made with this tokenizer."""
        fp = tokenizer_or_fingerprint
        if not isinstance(fp, str):
            fp = fp.fingerprint()
        if fp != self.fingerprint:
            raise DataError(
                f"tokenizer mismatch: the shards in {self.directory} were made with tokenizer {self.fingerprint}, "
                f"this one is {fp}; use the tokenizer in {self.directory / 'tokenizer'} or re-run 'slm prepare'"
            )

    def memmaps(self, split: str) -> list[np.ndarray]:
        return [np.memmap(self.shard_path(s), dtype=self.dtype, mode="r") for s in self.shards(split) if s["tokens"]]


def read_manifest(directory: str | os.PathLike) -> Manifest:
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise DataError(f"no {MANIFEST} in {directory}: prepare the data first with 'slm prepare CONFIG'")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"{path} is not valid JSON; re-run 'slm prepare'") from None
    if data.get("format") != FORMAT:
        raise DataError(f"{path}: unknown format {data.get('format')!r} (expected {FORMAT})")
    return Manifest(directory, data)
