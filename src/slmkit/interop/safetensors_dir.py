"""Reading a Hugging Face weights directory (one `model.safetensors`, or shards listed in
`model.safetensors.index.json`) lazily, tensor by tensor."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from slmkit.errors import CheckpointError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class TensorSource:
    """The tensors of an HF directory by name; remembers which were taken, to report leftovers."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        index = self.directory / INDEX_FILE
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            self.file_of = {name: self.directory / shard for name, shard in weight_map.items()}
        elif (self.directory / SINGLE_FILE).is_file():
            path = self.directory / SINGLE_FILE
            with safe_open(str(path), framework="pt") as f:
                self.file_of = {name: path for name in f.keys()}
        elif any(self.directory.glob("*.bin")):
            raise CheckpointError(f"{self.directory} holds only PyTorch .bin weights; slmkit reads safetensors only "
                                  "(it never unpickles). Convert them with transformers: "
                                  "model.save_pretrained(dir, safe_serialization=True)")
        else:
            raise CheckpointError(f"{self.directory} has no {SINGLE_FILE} or {INDEX_FILE}")
        for shard in set(self.file_of.values()):
            if not shard.is_file():
                raise CheckpointError(f"weight shard {shard} listed in {INDEX_FILE} is missing")
        self.taken: set[str] = set()
        self._handles: dict[Path, object] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.file_of

    def names(self) -> list[str]:
        return list(self.file_of)

    def take(self, name: str) -> torch.Tensor:
        if name not in self.file_of:
            raise CheckpointError(f"{self.directory} is missing tensor '{name}'")
        path = self.file_of[name]
        if path not in self._handles:
            self._handles[path] = safe_open(str(path), framework="pt")
        self.taken.add(name)
        return self._handles[path].get_tensor(name)

    def leftover(self, ignorable: tuple[str, ...] = ()) -> list[str]:
        """Names never taken, except those ending with one of `ignorable` (buffers old checkpoints carry)."""
        return sorted(n for n in self.file_of if n not in self.taken and not n.endswith(ignorable))
